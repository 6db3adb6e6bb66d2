//! One test per attack of issue 16's table, against the parity fixture as a child process
//! (default settings, as in the issue), so that the memory and descriptors asserted are the
//! server's own (`/proc/<pid>/status`, `/proc/<pid>/fd`). Each test keeps a healthy client
//! connected throughout and checks that it is served during and after the attack.
//!
//! | attack (issue 16) | asserted by |
//! |---|---|
//! | ~1 MB call with 1,000,000 surplus positional arguments (x16 clients) | `sixteen_calls_with_a_million_surplus_arguments_get_small_replies` here; wire.rs `a_call_with_a_hundred_thousand_bad_arguments_gets_a_reply_of_a_few` (the reply's shape) |
//! | 500,000 unknown keyword arguments in a 1 MB frame | `a_frame_of_unknown_keyword_arguments_gets_a_small_reply` here (as many distinct keys as fit in a frame: 180,000); wire.rs as above (the issue list's shape) |
//! | 100,000 `sleepy(60000)` in flight, replies not read | `a_hundred_thousand_calls_in_flight_cost_a_bounded_few_mib_and_give_it_back` here; wire.rs `a_connection_at_its_bound_of_calls_in_flight_gets_an_error_and_lives_on` (the error) |
//! | 100 connections holding an unfinished fragmented message near the hard limit | `a_hundred_unfinished_messages_at_the_hard_limit_are_bounded_and_given_back` here; limits.rs `a_fragmented_message_past_the_hard_limit_closes_with_1009`, `unfinished_messages_beyond_the_memory_budget_close_their_connections_only` |
//! | 1,100 events of 512 KiB to a client that does not read | `large_events_to_a_client_that_does_not_read_close_it_at_the_byte_budget` here |
//! | one large reply read at 2 KiB/s | `a_client_reading_its_replies_at_2_kib_a_second_is_dropped_at_the_write_deadline` here (in-process: the deadline is two ping intervals, 40 s with parity's defaults); pump.rs unit test `a_client_that_reads_nothing_is_dropped_at_the_write_deadline` |
//! | 500 slow partial upgrade requests; 2,000 silent TCP connections | limits.rs `a_partial_upgrade_request_and_a_silent_socket_are_closed_at_the_deadline` (the deadlines shortened to 300 ms) |
//! | 1,100 silent TCP connections past a 1,024 open-file limit | `eleven_hundred_silent_sockets_do_not_lock_out_a_healthy_client` here (parity under a 1,024 soft limit); wire.rs `serving_raises_the_open_file_limit_to_what_the_system_allows` |
//! | 100,000 identities calling `limited` | wire.rs `callers_with_long_identities_leave_no_limiter_state_once_their_limit_expires` (entries expire; `rate_limit_entries` counts them), the limiter's unit tests |
//! | 300 connections with 1 MB identities calling `limited` | wire.rs `parity_reports_an_overflow_and_treats_binary_auth_as_anonymous` (identities over 1 KiB are anonymous) and the test above |
//! | `Origin: http://evil.example` with a cookie | limits.rs `by_default_pages_of_other_sites_are_refused_and_the_servers_own_are_not` |
//! | two calls with one `id`, then `cancel` | wire.rs `cancel_stops_every_call_that_shares_its_id` |
//! | a function name with newlines; 200,000 one-byte bad frames | `forged_names_and_a_flood_of_bad_frames_write_a_few_log_lines` here |
//! | 20,000 panicking calls under `RUST_BACKTRACE=1` (148 MB of stderr) | `two_thousand_panicking_calls_with_rust_backtrace_write_a_few_kib_of_log` here |
//! | an unknown function name of 1 MB (2 MB of log) | `a_megabyte_function_name_writes_a_short_log_line` here |
//! | one `echo` argument of 8,000 lists nested 120 deep (856 ms, +168 MB) | `a_megabyte_of_nested_lists_is_refused_before_it_is_decoded` here; limits.rs `a_call_over_max_frame_nodes_is_refused_unread_and_the_connection_goes_on` (the bound, the setting, the depth) |
//! | `Host` and `Origin` both the attacker's name (DNS rebinding) | limits.rs `with_allowed_hosts_a_rebound_name_is_refused_and_the_listed_ones_are_served` |
//!
//! The rows after the one of forged names came later, with the hardening of logs, decoding and
//! hosts.
//!
//! The memory bounds are the server's RSS in a debug build (the tests' profile), read from
//! `/proc`; each one is chosen from measurements with a wide margin (each comment says which)
//! and still far below what the same attack cost before the fixes.

mod common;

use std::time::Duration;

use common::child::*;
use common::*;
use rmpv::Value;

fn int(n: i64) -> Value {
    Value::from(n)
}

/// A healthy client's round trip: `add(n, 1)`.
async fn served(c: &mut Client, n: i64) {
    assert_eq!(c.ok("add", vec![int(n), int(1)]).await, int(n + 1));
}

/// What a healthy client does before an attack: connect, `init`, one call.
async fn healthy(server: &Parity) -> Client {
    let mut c = Client::connect_as(&server.url, v("healthy")).await;
    served(&mut c, 0).await;
    c
}

/// Waits for the server's RSS to come back within `margin` MiB of `baseline` (up to 5 s) and
/// asserts it did.
async fn assert_rss_back(server: &Parity, baseline: f64, margin: f64, what: &str) -> f64 {
    let after = server
        .settle_rss(baseline + margin, Duration::from_secs(5))
        .await;
    assert!(
        after <= baseline + margin,
        "{what}: RSS {after:.1} MiB after the clients left, baseline {baseline:.1} MiB \
         (allowed +{margin} MiB)"
    );
    after
}

#[tokio::test]
async fn sixteen_calls_with_a_million_surplus_arguments_get_small_replies() {
    let mut server = Parity::start("warn");
    let mut ok = healthy(&server).await;
    let baseline = server.rss_mib();
    server.reset_peak();

    // One frame, reused: add(0, 0, 0, ...) with 1,000,000 arguments, 1 byte each (0.95 MiB,
    // under the 1 MiB frame limit).
    let frame = binary_frame(&encode(&rpc(1, "add", vec![int(0); 1_000_000])));
    assert!(frame.len() < 1 << 20);
    let attackers = (0..16).map(|_| {
        let (addr, frame) = (server.addr.clone(), frame.clone());
        tokio::spawn(async move {
            let mut c = Raw::connect(&addr).await;
            assert!(c.write(&frame).await);
            let (op, reply) = c.next(Duration::from_secs(30)).await.expect("a reply");
            assert_eq!(op, OP_BINARY);
            reply.len()
        })
    });
    let sizes: Vec<usize> = futures_util::future::join_all(attackers)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    served(&mut ok, 1).await;
    let peak = server.peak_mib();
    let after = assert_rss_back(&server, baseline, 8.0, "surplus arguments").await;
    eprintln!(
        "surplus arguments x16: replies {:?} B, RSS {baseline:.1} -> peak {peak:.1} -> {after:.1} MiB",
        sizes.iter().max()
    );
    // Was 165 MB per reply. One issue, whatever the count: a few hundred bytes.
    assert!(sizes.iter().all(|&n| n < 1024), "reply sizes {sizes:?}");
    // Was 3 GiB for 16 clients. Each call holds its frame while it is checked (measured: 23-30
    // MiB for the 16 at once; the arguments are counted, not decoded, since `max_frame_nodes`).
    assert!(
        peak - baseline < 128.0,
        "RSS {baseline:.1} -> {peak:.1} MiB at peak"
    );
    served(&mut ok, 2).await;
    server.assert_alive();
}

#[tokio::test]
async fn a_frame_of_unknown_keyword_arguments_gets_a_small_reply() {
    let mut server = Parity::start("warn");
    let mut ok = healthy(&server).await;
    // Distinct keys of 1 to 3 characters, as many as fit in a 1 MiB frame.
    let alphabet: Vec<char> = ('a'..='z').chain('A'..='Z').chain('0'..='9').collect();
    let mut keys = Vec::new();
    'all: for len in 1..=3u32 {
        for i in 0..alphabet.len().pow(len) {
            let mut k = String::new();
            let mut n = i;
            for _ in 0..len {
                k.push(alphabet[n % alphabet.len()]);
                n /= alphabet.len();
            }
            keys.push(k);
            if keys.len() == 180_000 {
                break 'all;
            }
        }
    }
    let kwargs = Value::Map(
        keys.into_iter()
            .map(|k| (Value::from(k), Value::Nil))
            .collect(),
    );
    let frame = Value::Map(vec![
        (v("type"), v("rpc")),
        (v("id"), int(1)),
        (v("name"), v("add")),
        (v("args"), Value::Array(vec![int(1), int(2)])),
        (v("kwargs"), kwargs),
    ]);
    let bytes = encode(&frame);
    assert!(bytes.len() < 1 << 20, "{} bytes", bytes.len());
    let mut c = Raw::connect(&server.addr).await;
    assert!(c.write(&binary_frame(&bytes)).await);
    let (_, reply) = c.next(Duration::from_secs(30)).await.expect("a reply");
    eprintln!(
        "unknown keyword arguments: a {} B frame of 180,000, a {} B reply",
        bytes.len(),
        reply.len()
    );
    // Was 64 MB for 500,000. Now one issue: 360,000 values are more than a call may hold
    // (`too_large`; wire.rs has the 16 issues and the count of the rest, for fewer keys).
    assert!(reply.len() < 4096, "a {} byte reply", reply.len());
    let e = get(&decode(&reply), "error").clone();
    assert_eq!(get(&e, "code"), &v("VALIDATION_ERROR"));
    served(&mut ok, 1).await;
    server.assert_alive();
}

#[tokio::test]
async fn a_hundred_thousand_calls_in_flight_cost_a_bounded_few_mib_and_give_it_back() {
    let mut server = Parity::start("warn");
    let mut ok = healthy(&server).await;
    let baseline = server.rss_mib();
    server.reset_peak();
    // 100,000 sleepy(60000) calls, pipelined, replies never read. 1,024 run; the rest are
    // answered TOO_MANY_CALLS, which the server stops writing (and so stops reading) once the
    // socket is full.
    let mut frames = Vec::new();
    for id in 0..100_000 {
        frames.extend_from_slice(&binary_frame(&encode(&rpc(
            id,
            "sleepy",
            vec![int(60_000)],
        ))));
    }
    let mut c = Raw::connect(&server.addr).await;
    let writer = tokio::spawn(async move {
        c.write(&frames).await;
        c
    });
    // Long enough for the server to read what it will (the writer blocks then).
    tokio::time::sleep(Duration::from_secs(2)).await;
    served(&mut ok, 1).await;
    let held = server.rss_mib();
    let peak = server.peak_mib();
    writer.abort();
    let _ = writer.await;
    let after = assert_rss_back(&server, baseline, 8.0, "calls in flight").await;
    eprintln!(
        "100,000 calls in flight: RSS {baseline:.1} -> {held:.1} (peak {peak:.1}) -> {after:.1} MiB"
    );
    // Was +190 MiB, 173 MiB of it kept. 1,024 sleeping calls and a socket's worth of answers:
    // measured +6 MiB.
    assert!(
        peak - baseline < 32.0,
        "RSS {baseline:.1} -> {peak:.1} MiB at peak"
    );
    served(&mut ok, 2).await;
    server.assert_alive();
}

/// Connects `n` raw clients that each send a fragmented message of `total` bytes and never
/// finish it.
async fn unfinished_wave(addr: &str, n: usize, total: usize) -> Vec<Raw> {
    let fragment = vec![0x90u8; 64 * 1024];
    let tasks = (0..n).map(|_| {
        let (addr, fragment) = (addr.to_string(), fragment.clone());
        tokio::spawn(async move {
            let mut c = Raw::connect(&addr).await;
            let mut sent = 0;
            while sent < total {
                let len = fragment.len().min(total - sent);
                let op = if sent == 0 { OP_BINARY } else { OP_CONT };
                let mut f = header(false, op, len);
                f.extend_from_slice(&fragment[..len]);
                assert!(c.write(&f).await, "closed after {sent} bytes");
                sent += len;
            }
            c
        })
    });
    futures_util::future::join_all(tasks)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect()
}

/// Two waves of 100 connections that each hold a 1.9 MiB unfinished message, then leave (the
/// hard limit is 2 MiB, twice the 1 MiB frame limit); `(baseline, [(held, after)], peak)`.
async fn unfinished_waves(server: &mut Parity) -> (f64, Vec<(f64, f64)>, f64) {
    let mut ok = healthy(server).await;
    let baseline = server.rss_mib();
    server.reset_peak();
    let mut figures = Vec::new();
    for wave in 1..=2 {
        let clients = unfinished_wave(&server.addr, 100, 1_900 * 1024).await;
        // Give the server time to read what was sent.
        tokio::time::sleep(Duration::from_millis(500)).await;
        served(&mut ok, wave).await;
        let held = server.rss_mib();
        drop(clients);
        // Settled within the bound, or 4 s (the server trims 0.2 to 1.2 s after the last
        // large buffer goes).
        let mut after = server.rss_mib();
        for _ in 0..40 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let now = server.rss_mib();
            if now >= after - 0.1 && now <= baseline + 8.0 {
                break;
            }
            after = after.min(now);
        }
        figures.push((held, server.rss_mib()));
    }
    served(&mut ok, 3).await;
    server.assert_alive();
    (baseline, figures, server.peak_mib())
}

#[tokio::test]
async fn a_hundred_unfinished_messages_at_the_hard_limit_are_bounded_and_given_back() {
    let mut server = Parity::start("warn");
    let (baseline, figures, peak) = unfinished_waves(&mut server).await;
    eprintln!(
        "100 unfinished 1.9 MiB messages, two waves (glibc defaults; the server trims): RSS \
         {baseline:.1} -> {figures:.1?} MiB (held, after), peak {peak:.1}"
    );
    // 100 x 1.9 MiB are held (190 MiB, within the 512 MiB budget): that is the bound (measured
    // peak +195 MiB). Was 1.8 GiB with a 16 MiB hard limit.
    assert!(
        peak - baseline < 100.0 * 1.9 * 1.5,
        "RSS {baseline:.1} -> {peak:.1} MiB at peak"
    );
    // Was 1.3 GiB kept after the second wave. Measured +0.4 to +7.2 MiB after a wave (glibc
    // defaults; the server asks glibc to trim once the buffers are gone).
    for (wave, &(_, after)) in figures.iter().enumerate() {
        assert!(
            after - baseline < 8.0,
            "RSS {after:.1} MiB after wave {}, baseline {baseline:.1}",
            wave + 1
        );
    }
}

/// Sends `shout(message)` and reads until its reply; returns the events read meanwhile.
async fn shout(c: &mut Client, id: i64, message: &str) -> usize {
    c.send(&rpc(id, "shout", vec![v(message)])).await;
    let mut events = 0;
    loop {
        let f = c.recv().await;
        if get(&f, "type") == &v("event") {
            events += 1;
        } else {
            assert_eq!(get(&f, "id"), &int(id), "{f}");
            assert!(has(&f, "result"), "{f}");
            return events;
        }
    }
}

#[tokio::test]
async fn large_events_to_a_client_that_does_not_read_close_it_at_the_byte_budget() {
    let mut server = Parity::start("warn");
    let mut ok = healthy(&server).await;
    let baseline = server.rss_mib();
    server.reset_peak();
    // A client that sends init and never reads.
    let mut mute = Raw::connect(&server.addr).await;
    assert!(
        mute.send(&map(vec![("type", v("init")), ("auth", v("mute"))]))
            .await
    );
    served(&mut ok, 1).await;
    // 300 events of 512 KiB (the issue sent 1,100): the mute client's 8 MiB byte budget is
    // spent after about 16 beyond what the sockets take.
    let message = "x".repeat(512 * 1024);
    let mut events = 0;
    for id in 0..300 {
        events += shout(&mut ok, 100 + id, &message).await;
    }
    // Events emitted before a call's reply arrive before it; the last one may follow.
    events += usize::from(events < 300);
    let peak = server.peak_mib();
    let end = mute.close_code(Duration::from_secs(10)).await;
    let after = assert_rss_back(&server, baseline, 8.0, "large events").await;
    eprintln!(
        "300 events of 512 KiB, one mute client: RSS {baseline:.1} -> peak {peak:.1} -> \
         {after:.1} MiB; the mute client's end {end:?}"
    );
    assert_eq!(events, 300, "the healthy client got every event");
    // Closed by the slow-client policy: 1008 when the close frame fits, else the socket ends.
    assert!(
        matches!(end, Some(Some(1008)) | Some(None)),
        "the mute client is still open: {end:?}"
    );
    // Was 555 MiB (517 MiB kept). The mute client's 8 MiB, the events in flight to the healthy
    // one and the sockets: measured peak +30 MiB.
    assert!(
        peak - baseline < 64.0,
        "RSS {baseline:.1} -> {peak:.1} MiB at peak"
    );
    served(&mut ok, 2).await;
    server.assert_alive();
}

#[tokio::test]
async fn a_client_reading_its_replies_at_2_kib_a_second_is_dropped_at_the_write_deadline() {
    use tokio::io::AsyncReadExt;
    // In-process: the deadline is two ping intervals, here 100 ms each.
    use ::parity as _;
    let url = start(ephaptic::Server::new().ping_interval(Some(Duration::from_millis(100)))).await;
    let addr = url
        .trim_start_matches("ws://")
        .trim_end_matches("/_ephaptic")
        .to_string();
    let mut ok = Client::connect(&url).await;
    served(&mut ok, 0).await;
    // 24 replies of 1 MB each, far more than loopback's socket buffers take (a few MiB), read
    // at 2 KiB/s.
    let mut slow = Raw::connect(&addr).await;
    let big = Value::Binary(vec![7; 1_000_000]);
    let started = tokio::time::Instant::now();
    for id in 0..24 {
        // The server stops reading while its answers wait, and may drop the client before the
        // last call is written.
        if !slow.send(&rpc(id, "echo", vec![big.clone()])).await {
            break;
        }
    }
    let mut buf = [0u8; 205];
    let mut read = 0usize;
    let mut i = 0;
    // What the server sees: the slow client's connection gone. (The client itself would see
    // the end only after reading what the kernel still buffers for it, megabytes.)
    let gone = loop {
        let m = ephaptic::metrics().unwrap();
        if m.connections == 1 {
            break true;
        }
        if started.elapsed() > Duration::from_secs(10) {
            break false;
        }
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(50), slow.tcp.read(&mut buf)).await
        {
            read += n;
        }
        // The healthy client talks every interval, or it would be closed as silent.
        i += 1;
        served(&mut ok, i).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let took = started.elapsed();
    eprintln!("a 2 KiB/s reader: dropped after {took:?}, having read {read} B");
    // Was held for the whole 150 s run. Now dropped after two intervals of 100 ms without
    // progress (a generous 10 s: the machine may be busy).
    assert!(gone, "still open after {took:?}: {:?}", ephaptic::metrics());
    // What waited for it is given back.
    let until = tokio::time::Instant::now() + Duration::from_secs(5);
    while ephaptic::metrics().unwrap().buffered_bytes > 0 && tokio::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    served(&mut ok, 1).await;
    let m = ephaptic::metrics().unwrap();
    assert_eq!((m.connections, m.buffered_bytes), (1, 0), "{m:?}");
}

#[tokio::test]
async fn eleven_hundred_silent_sockets_do_not_lock_out_a_healthy_client() {
    // The issue's server had an open-file limit of 1,024; parity starts under one here (soft
    // 1,024, hard 20,000 or the machine's) and raises it to the hard limit as it serves.
    let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let mut cmd = std::process::Command::new("prlimit");
    cmd.arg(format!("--nofile=1024:{}", hard.clamp(1024, 20_000)))
        .arg(parity_bin());
    let mut server = Parity::start_with(cmd, "warn");
    let fds_before = server.fds();
    let mut silent = Vec::new();
    for _ in 0..1_100 {
        silent.push(
            tokio::net::TcpStream::connect(&server.addr)
                .await
                .expect("connect"),
        );
    }
    // While they are held, a new client connects and is served.
    let mut ok = tokio::time::timeout(Duration::from_secs(5), healthy(&server))
        .await
        .expect("a healthy client is accepted while 1,100 silent sockets are open");
    served(&mut ok, 1).await;
    let held = server.fds();
    drop(silent);
    let after = server
        .settle_fds(fds_before + 1, Duration::from_secs(5))
        .await;
    eprintln!("1,100 silent sockets: server fds {fds_before} -> {held} -> {after}");
    assert!(held >= fds_before + 1_100, "{held} fds while held");
    assert!(after <= fds_before + 1, "{after} fds after they left");
    served(&mut ok, 2).await;
    server.assert_alive();
}

#[tokio::test]
async fn forged_names_and_a_flood_of_bad_frames_write_a_few_log_lines() {
    // At parity's default level (info), where the issue saw 37 MB of log.
    let mut server = Parity::start("info");
    let mut ok = healthy(&server).await;
    let before = server.log_bytes();
    let mut c = Raw::connect(&server.addr).await;
    let forged = "nope\nERROR forged: the database is gone\n";
    assert!(c.send(&rpc(1, forged, vec![])).await);
    let (_, reply) = c.next(Duration::from_secs(10)).await.expect("NOT_FOUND");
    assert_eq!(get(get(&decode(&reply), "error"), "code"), &v("NOT_FOUND"));
    // 200,000 one-byte frames that are not MessagePack maps.
    let mut flood = Vec::with_capacity(200_000 * 7);
    for _ in 0..200_000 {
        flood.extend_from_slice(&binary_frame(&[0xc1]));
    }
    assert!(c.write(&flood).await);
    assert!(c.send(&rpc(2, "add", vec![int(1), int(2)])).await);
    let (_, reply) = c.next(Duration::from_secs(30)).await.expect("a reply");
    assert_eq!(get(&decode(&reply), "result"), &int(3));
    drop(c);
    served(&mut ok, 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let written = server.log_bytes() - before;
    let log = server.log();
    eprintln!("a forged name and 200,000 bad frames: {written} B of log");
    assert!(
        !log.lines().any(|l| l.starts_with("ERROR forged")),
        "a forged log line:\n{log}"
    );
    // Was 37 MB. The first three bad frames, a count at the close, a line or two about the
    // name: a few lines of a few hundred bytes.
    assert!(written < 8 * 1024, "{written} B of log:\n{log}");
    server.assert_alive();
}

/// Issue 23: 300 `notify` calls to 900 KB user names took the server from 4 to 270 MB, still
/// held 33 s later (each name became a stream kept for an hour), and `v: 2` joins of 900 KB
/// room names held 877 KiB each. A `to(..)` target longer than any identity reaches no one and
/// keeps nothing; a group name past the bound is refused at the join and at the emit.
#[tokio::test]
async fn long_user_and_room_names_keep_no_memory() {
    let mut server = Parity::start("warn");
    let mut ok = healthy(&server).await;
    let baseline = server.rss_mib();
    let mut c = Client::connect_as(&server.url, v("namer")).await;
    for i in 0..300 {
        let user = format!("{i}{}", "u".repeat(900_000));
        assert_eq!(c.ok("notify", vec![v(&user), v("hi")]).await, int(0));
    }
    served(&mut ok, 1).await;
    // A client that speaks sessions (its joins are followed by a position and a history read).
    let (mut tab, _, _) = common::tab::Tab::open(&server.url, "roomer", vec![]).await;
    for i in 0..50 {
        let room = format!("{i}{}", "r".repeat(900_000));
        assert_eq!(
            tab.c.ok("enter_room", vec![v(&room)]).await,
            Value::from(false)
        );
        assert_eq!(tab.c.ok("room_say", vec![v(&room), v("x")]).await, int(0));
    }
    drop((c, tab));
    served(&mut ok, 2).await;
    // Was +266 MB, held. What remains is the allocator's and the debug build's noise.
    let after = assert_rss_back(&server, baseline, 24.0, "long names").await;
    eprintln!("300 long user names and 50 long room names: {baseline:.1} -> {after:.1} MiB");
    server.assert_alive();
}

/// A line the server logs after everything before it, to wait for (see `wait_for_log`): a call
/// to an unknown function, on a connection of its own (the first three bad frames of a
/// connection are logged).
async fn log_sentinel(server: &Parity, name: &str) {
    let mut c = Raw::connect(&server.addr).await;
    assert!(c.send(&rpc(1, name, vec![])).await);
    let (_, reply) = c.next(Duration::from_secs(10)).await.expect("NOT_FOUND");
    assert_eq!(get(get(&decode(&reply), "error"), "code"), &v("NOT_FOUND"));
    assert!(
        server.wait_for_log(name, Duration::from_secs(10)).await,
        "the sentinel {name:?} was not logged"
    );
}

#[tokio::test]
async fn two_thousand_panicking_calls_with_rust_backtrace_write_a_few_kib_of_log() {
    // The issue: 20,000 panicking calls wrote 148 MB of stderr under RUST_BACKTRACE=1 (a
    // backtrace for each), besides a log line each.
    let mut cmd = std::process::Command::new(parity_bin());
    cmd.env("RUST_BACKTRACE", "1");
    let mut server = Parity::start_with(cmd, "info");
    let mut ok = healthy(&server).await;
    let before = server.log_bytes();
    let mut c = Raw::connect(&server.addr).await;
    let calls = 2_000;
    let mut frames = Vec::new();
    for id in 0..calls {
        frames.extend_from_slice(&binary_frame(&encode(&rpc(id, "panics", vec![]))));
    }
    assert!(c.write(&frames).await);
    let mut answered = vec![false; calls as usize];
    for _ in 0..calls {
        let (_, reply) = c.next(Duration::from_secs(30)).await.expect("a reply");
        let reply = decode(&reply);
        // Each call still costs only itself.
        assert_eq!(get(get(&reply, "error"), "code"), &v("INTERNAL"), "{reply}");
        answered[get(&reply, "id").as_u64().unwrap() as usize] = true;
    }
    assert!(answered.iter().all(|a| *a), "every call answered once");
    served(&mut ok, 1).await;
    log_sentinel(&server, "after-the-panics").await;
    let written = server.log_bytes() - before;
    let log = server.log();
    eprintln!("{calls} panicking calls: {written} B of log");
    // The first three in full: the hook's message and backtrace, and the server's line.
    let hook_lines = log.matches("panicked at").count();
    let server_lines = log.matches("'panics' failed: panicked").count();
    assert!(
        log.contains("stack backtrace"),
        "RUST_BACKTRACE is on:\n{log}"
    );
    assert!((1..=3).contains(&hook_lines), "{hook_lines} hook messages");
    assert!((1..=3).contains(&server_lines), "{server_lines} lines");
    // Measured: 35 KiB (three backtraces of a debug build). Was 2,000 backtraces.
    assert!(written < 64 * 1024, "{written} B of log");
    server.assert_alive();
}

#[tokio::test]
async fn a_megabyte_function_name_writes_a_short_log_line() {
    let mut server = Parity::start("info");
    let before = server.log_bytes();
    let mut c = Raw::connect(&server.addr).await;
    let name = "n".repeat(1_000_000);
    assert!(c.send(&rpc(1, &name, vec![])).await);
    let (_, reply) = c.next(Duration::from_secs(10)).await.expect("NOT_FOUND");
    assert_eq!(get(get(&decode(&reply), "error"), "code"), &v("NOT_FOUND"));
    log_sentinel(&server, "after-the-long-name").await;
    let written = server.log_bytes() - before;
    let log = server.log();
    eprintln!("a 1 MB function name: {written} B of log");
    // Quoted in part, with its length.
    assert!(log.contains("(1000000 bytes)"), "{log}");
    // Was 2 MB (the name, twice). Now two lines of a few hundred bytes.
    assert!(written < 4 * 1024, "{written} B of log");
    server.assert_alive();
}

/// An `echo` frame whose one argument is `lists` lists nested `depth` deep (written by hand:
/// as a decoded value it is what is being measured).
fn nested_echo(id: u8, lists: u32, depth: usize) -> Vec<u8> {
    let mut frame = b"\x84\xa4type\xa3rpc\xa2id".to_vec();
    frame.push(id);
    frame.extend_from_slice(b"\xa4name\xa4echo\xa4args\x91\xdd");
    frame.extend_from_slice(&lists.to_be_bytes());
    for _ in 0..lists {
        frame.extend(std::iter::repeat_n(0x91, depth - 1));
        frame.push(0xc0);
    }
    frame
}

#[tokio::test]
async fn a_megabyte_of_nested_lists_is_refused_before_it_is_decoded() {
    let mut server = Parity::start("warn");
    let mut ok = healthy(&server).await;
    let baseline = server.rss_mib();
    server.reset_peak();
    let mut c = Raw::connect(&server.addr).await;
    // The issue's argument: 8,000 lists nested 120 deep, 960,001 values in 960 KB, under the
    // 1 MiB frame bound. Decoded into a `Value` and echoed it took 856 ms and 168 MB.
    let frame = nested_echo(1, 8_000, 120);
    assert!(frame.len() < 1 << 20);
    let started = std::time::Instant::now();
    assert!(c.write(&binary_frame(&frame)).await);
    let (_, reply) = c.next(Duration::from_secs(10)).await.expect("a reply");
    let took = started.elapsed();
    let error = get(&decode(&reply), "error").clone();
    assert_eq!(get(&error, "code"), &v("VALIDATION_ERROR"), "{error}");
    let issue = &get(&error, "data").as_array().expect("an issue list")[0];
    assert_eq!(get(issue, "type"), &v("too_large"));
    let message = get(&error, "message").as_str().unwrap();
    assert!(
        message.contains("50000") && message.contains("Server::max_frame_nodes"),
        "{message}"
    );
    // The same connection goes on, and healthy clients are served.
    assert!(c.send(&rpc(2, "echo", vec![v("after")])).await);
    let (_, reply) = c.next(Duration::from_secs(10)).await.expect("a reply");
    assert_eq!(get(&decode(&reply), "result"), &v("after"));
    served(&mut ok, 1).await;
    let peak = server.peak_mib();
    eprintln!("1 MB of nested lists: refused in {took:?}; RSS {baseline:.1} -> peak {peak:.1} MiB");
    // Measured: refused in 40-75 ms, peak +1 MiB (the frame itself). The deadline and the bound
    // are generous; the decode took 168 MB.
    assert!(took < Duration::from_secs(5), "refused in {took:?}");
    assert!(
        peak - baseline < 32.0,
        "peak {peak:.1} MiB from {baseline:.1}"
    );
    server.assert_alive();
}
