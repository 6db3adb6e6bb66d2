//! The parity fixture as a child process, so that what the server holds (VmRSS, its peak, open
//! descriptors, its log) is read from `/proc/<pid>` of the server alone; and a raw WebSocket
//! client that writes frames by hand (mask key zero, so gigabytes cost a memcpy, not a masking
//! loop in a debug build) for the hostile side.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The parity binary: `PARITY_BIN` when set, else `<target>/<profile>/parity` beside this test
/// executable, built (once per test process) with `cargo build -p parity` so it is never stale.
/// `./test.sh` builds it before the tests, so that build is a no-op there.
pub fn parity_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("PARITY_BIN") {
            return PathBuf::from(bin);
        }
        // <target>/<profile>/deps/<test>-<hash>
        let exe = std::env::current_exe().unwrap();
        let profile_dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
        let target = profile_dir.parent().unwrap();
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut build = Command::new(cargo);
        build
            .args(["build", "--quiet", "-p", "parity"])
            .env("CARGO_TARGET_DIR", target)
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        if release {
            build.arg("--release");
        }
        let status = build.status().expect("run cargo build -p parity");
        assert!(status.success(), "cargo build -p parity failed");
        let bin = profile_dir.join("parity");
        assert!(bin.exists(), "no parity binary at {}", bin.display());
        bin
    })
    .clone()
}

/// A glibc tuning variable the tests clear, so that what they see given back is what the server
/// gives back by itself (it asks glibc to trim after large buffers; see `session/budget.rs`).
const GLIBC_TUNING: &str = "MALLOC_TRIM_THRESHOLD_";

/// A running parity server; killed when dropped.
pub struct Parity {
    child: Child,
    pub pid: u32,
    pub url: String,
    pub addr: String,
    /// Everything it wrote to stderr (its log), kept up to 4 MiB; `log_bytes` counts it all.
    log: Arc<Mutex<Vec<u8>>>,
    log_bytes: Arc<AtomicUsize>,
}

impl Parity {
    /// Starts parity on a free loopback port, logging at `level` (`info`, `warn`).
    pub fn start(level: &str) -> Parity {
        Self::start_with(Command::new(parity_bin()), level)
    }

    /// Starts `cmd` (parity, or a wrapper that execs it) with parity's arguments appended, and
    /// glibc's own malloc defaults unless `cmd` sets [`GLIBC_TUNING`].
    pub fn start_with(mut cmd: Command, level: &str) -> Parity {
        if !cmd.get_envs().any(|(k, _)| k == GLIBC_TUNING) {
            cmd.env_remove(GLIBC_TUNING);
        }
        let mut child = cmd
            .args(["--addr", "127.0.0.1:0"])
            .env("EPHAPTIC_LOG", level)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start parity");
        let pid = child.id();
        let log = Arc::new(Mutex::new(Vec::new()));
        let log_bytes = Arc::new(AtomicUsize::new(0));
        let mut stderr = child.stderr.take().unwrap();
        let (keep, count) = (log.clone(), log_bytes.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 64 * 1024];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                count.fetch_add(n, Ordering::Relaxed);
                let mut kept = keep.lock().unwrap();
                let room = (4usize << 20).saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        });
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).expect("parity's first line");
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line from parity: {line:?}"))
            .to_string();
        let addr = url
            .trim_start_matches("ws://")
            .trim_end_matches("/_ephaptic")
            .to_string();
        // Keep draining stdout so that the child never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = stdout.read_to_end(&mut sink);
        });
        Parity {
            child,
            pid,
            url,
            addr,
            log,
            log_bytes,
        }
    }

    fn status_kib(&self, field: &str) -> usize {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .expect("the server is gone");
        let line = status
            .lines()
            .find(|l| l.starts_with(field))
            .unwrap_or_else(|| panic!("no {field} in /proc/pid/status"));
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// Resident memory now, in MiB.
    pub fn rss_mib(&self) -> f64 {
        self.status_kib("VmRSS:") as f64 / 1024.0
    }

    /// Peak resident memory since start or the last [`reset_peak`](Self::reset_peak), MiB.
    pub fn peak_mib(&self) -> f64 {
        self.status_kib("VmHWM:") as f64 / 1024.0
    }

    /// Restarts the peak (VmHWM) from the current RSS.
    pub fn reset_peak(&self) {
        std::fs::write(format!("/proc/{}/clear_refs", self.pid), "5").expect("reset VmHWM");
    }

    /// Open descriptors.
    pub fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid))
            .expect("the server is gone")
            .count()
    }

    /// Bytes written to stderr so far.
    pub fn log_bytes(&self) -> usize {
        self.log_bytes.load(Ordering::Relaxed)
    }

    /// The log kept so far, as text.
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&self.log.lock().unwrap()).into_owned()
    }

    /// Waits (up to `limit`) until the log holds `needle`; whether it does. The log is read by a
    /// thread: a line the server wrote after everything else it logged shows that all of it
    /// has been read.
    pub async fn wait_for_log(&self, needle: &str, limit: Duration) -> bool {
        let until = tokio::time::Instant::now() + limit;
        loop {
            if self.log().contains(needle) {
                return true;
            }
            if tokio::time::Instant::now() >= until {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Panics when the server has exited.
    pub fn assert_alive(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            let log = self.log();
            let tail = &log[log.len().saturating_sub(4000)..];
            panic!("the server exited ({status}); its log ends:\n{tail}");
        }
    }

    /// Waits (up to `limit`) for RSS to fall to `target` MiB or below; returns the RSS then.
    pub async fn settle_rss(&self, target: f64, limit: Duration) -> f64 {
        let until = tokio::time::Instant::now() + limit;
        loop {
            let rss = self.rss_mib();
            if rss <= target || tokio::time::Instant::now() >= until {
                return rss;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits (up to `limit`) for the open descriptors to fall to `target`; returns the count.
    pub async fn settle_fds(&self, target: usize, limit: Duration) -> usize {
        let until = tokio::time::Instant::now() + limit;
        loop {
            let fds = self.fds();
            if fds <= target || tokio::time::Instant::now() >= until {
                return fds;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Parity {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A WebSocket client on a raw socket: the upgrade and the frames are written by hand.
pub struct Raw {
    pub tcp: TcpStream,
}

pub const OP_CONT: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;

/// A client frame's header: FIN, opcode, length, and a zero mask key (the payload is then sent
/// as it is).
pub fn header(fin: bool, opcode: u8, len: usize) -> Vec<u8> {
    let mut h = vec![(u8::from(fin) << 7) | opcode];
    if len < 126 {
        h.push(0x80 | len as u8);
    } else if len <= 0xffff {
        h.push(0x80 | 126);
        h.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        h.push(0x80 | 127);
        h.extend_from_slice(&(len as u64).to_be_bytes());
    }
    h.extend_from_slice(&[0, 0, 0, 0]);
    h
}

/// A whole binary frame carrying `payload`.
pub fn binary_frame(payload: &[u8]) -> Vec<u8> {
    let mut f = header(true, OP_BINARY, payload.len());
    f.extend_from_slice(payload);
    f
}

impl Raw {
    /// TCP connect and the upgrade (the 101 read, nothing after it).
    pub async fn connect(addr: &str) -> Raw {
        let tcp = TcpStream::connect(addr).await.expect("tcp connect");
        let _ = tcp.set_nodelay(true);
        let mut raw = Raw { tcp };
        raw.upgrade(addr).await;
        raw
    }

    async fn upgrade(&mut self, addr: &str) {
        let req = format!(
            "GET /_ephaptic HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        );
        self.tcp.write_all(req.as_bytes()).await.unwrap();
        let mut got = Vec::new();
        let mut byte = [0u8; 1];
        while !got.ends_with(b"\r\n\r\n") {
            let n = tokio::time::timeout(Duration::from_secs(10), self.tcp.read(&mut byte))
                .await
                .expect("the upgrade answer within 10 s")
                .unwrap();
            assert!(
                n == 1,
                "closed during the upgrade: {:?}",
                String::from_utf8_lossy(&got)
            );
            got.push(byte[0]);
        }
        assert!(
            got.starts_with(b"HTTP/1.1 101"),
            "{}",
            String::from_utf8_lossy(&got)
        );
    }

    /// Writes bytes (frames built with [`header`] / [`binary_frame`]); `false` once the server
    /// has closed.
    pub async fn write(&mut self, bytes: &[u8]) -> bool {
        self.tcp.write_all(bytes).await.is_ok()
    }

    pub async fn send(&mut self, frame: &rmpv::Value) -> bool {
        self.write(&binary_frame(&super::encode(frame))).await
    }

    /// The next frame from the server within `limit`: `(opcode, payload)`; `None` at the end of
    /// the stream, an error, or the deadline. Pings are skipped; fragments are joined.
    pub async fn next(&mut self, limit: Duration) -> Option<(u8, Vec<u8>)> {
        tokio::time::timeout(limit, self.next_frame()).await.ok()?
    }

    async fn next_frame(&mut self) -> Option<(u8, Vec<u8>)> {
        let mut message = Vec::new();
        let mut first_op = None;
        loop {
            let mut h = [0u8; 2];
            self.tcp.read_exact(&mut h).await.ok()?;
            let fin = h[0] & 0x80 != 0;
            let op = h[0] & 0x0f;
            let len = match h[1] & 0x7f {
                126 => {
                    let mut l = [0u8; 2];
                    self.tcp.read_exact(&mut l).await.ok()?;
                    u16::from_be_bytes(l) as usize
                }
                127 => {
                    let mut l = [0u8; 8];
                    self.tcp.read_exact(&mut l).await.ok()?;
                    u64::from_be_bytes(l) as usize
                }
                n => n as usize,
            };
            let mut payload = vec![0u8; len];
            self.tcp.read_exact(&mut payload).await.ok()?;
            if op >= 0x8 {
                if op == OP_PING || op == 0xa {
                    continue;
                }
                return Some((op, payload));
            }
            if first_op.is_none() {
                first_op = Some(op);
            }
            message.extend_from_slice(&payload);
            if fin {
                return Some((first_op.unwrap(), message));
            }
        }
    }

    /// Reads (skipping data) until the server's close frame or the end within `limit`: the close
    /// code, `Some(None)` for an end without a close frame, `None` when still open then.
    pub async fn close_code(&mut self, limit: Duration) -> Option<Option<u16>> {
        let until = tokio::time::Instant::now() + limit;
        loop {
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return None;
            }
            match tokio::time::timeout(left, self.next_frame()).await {
                Err(_) => return None,
                Ok(None) => return Some(None),
                Ok(Some((OP_CLOSE, p))) if p.len() >= 2 => {
                    return Some(Some(u16::from_be_bytes([p[0], p[1]])));
                }
                Ok(Some((OP_CLOSE, _))) => return Some(None),
                Ok(Some(_)) => {}
            }
        }
    }
}
