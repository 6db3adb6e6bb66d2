//! A real redis-server for the tests that run servers on Redis (redis.rs, presence.rs): started on
//! a free loopback port (or a given one), killed when dropped. With `EPHAPTIC_TEST_REDIS=cluster`
//! the same tests run against a Redis Cluster of three masters instead (`redis-cli --cluster
//! create`), whose URL is `redis+cluster://...`; the tests that kill or pause one Redis skip
//! themselves there ([`single_redis_or_skip`]). `redis_cluster.rs` makes the clusters,
//! `redis_sentinel.rs` a sentinel for the failover tests.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::redis_cluster::Cluster;

pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    /// With `EPHAPTIC_TEST_REDIS=cluster`: the cluster this stands for (`port` is its first node).
    cluster: Option<Cluster>,
}

/// Set to `cluster` to run the Redis tests against a Redis Cluster.
pub const MODE: &str = "EPHAPTIC_TEST_REDIS";

pub fn cluster_mode() -> bool {
    std::env::var(MODE).is_ok_and(|m| m == "cluster")
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Set (as `./test.sh` and CI do) to make a missing `redis-server` fail the Redis tests
/// instead of skipping them.
pub const REQUIRE: &str = "EPHAPTIC_REQUIRE_REDIS";

/// A redis-server for this test, or `return` from it with a line saying so on a machine that
/// has none (a plain `cargo test` passes there; the backplane's logic is still tested on the
/// in-process driver), unless [`REQUIRE`] is set.
#[macro_export]
macro_rules! redis_or_skip {
    () => {
        match $crate::common::redis_server::RedisServer::available() {
            Some(redis) => redis,
            None => return,
        }
    };
}

/// As [`redis_or_skip`], for a test that kills, pauses or restarts its one Redis: it returns at
/// once when the tests run against a Redis Cluster (saying so).
#[macro_export]
macro_rules! single_redis_or_skip {
    () => {{
        if $crate::common::redis_server::cluster_mode() {
            eprintln!("skipped on a Redis Cluster: this test stops or pauses its one Redis");
            return;
        }
        $crate::redis_or_skip!()
    }};
}

/// For a test of a Redis Cluster's own faults: it returns at once (saying so) unless the tests
/// run against a cluster (`EPHAPTIC_TEST_REDIS=cluster`).
#[macro_export]
macro_rules! only_on_a_cluster {
    () => {
        if !$crate::common::redis_server::cluster_mode() {
            eprintln!("skipped on one Redis: run with EPHAPTIC_TEST_REDIS=cluster");
            return;
        }
    };
}

impl RedisServer {
    pub fn start() -> RedisServer {
        if cluster_mode() {
            let cluster = Cluster::start(3);
            return RedisServer {
                port: cluster.ports[0],
                child: None,
                cluster: Some(cluster),
            };
        }
        RedisServer::start_on(free_port())
    }

    /// A started redis-server, or `None` when this machine has none and [`REQUIRE`] is unset.
    pub fn available() -> Option<RedisServer> {
        RedisServer::installed().then(RedisServer::start)
    }

    /// Whether this test can have a redis-server (see [`available`](Self::available)); says so
    /// when not.
    pub fn installed() -> bool {
        let installed = Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        if !installed && std::env::var_os(REQUIRE).is_none() {
            eprintln!(
                "skipped: no redis-server on this machine (./test.sh installs it; set {REQUIRE}=1 \
                 to fail instead)"
            );
            return false;
        }
        true
    }

    pub fn start_on(port: u16) -> RedisServer {
        RedisServer::start_with(port, &[])
    }

    /// A replica of the server on `master` (on a free port), once it has synced.
    pub fn replica_of(master: u16) -> RedisServer {
        let replica = RedisServer::start_with(
            free_port(),
            &["--replicaof", "127.0.0.1", &master.to_string()],
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while !cli(replica.port, &["INFO", "replication"]).contains("master_link_status:up") {
            assert!(Instant::now() < deadline, "the replica never synced");
            std::thread::sleep(Duration::from_millis(20));
        }
        replica
    }

    /// A redis-server on `port` with `extra` arguments.
    pub fn start_with(port: u16, extra: &[&str]) -> RedisServer {
        RedisServer::try_start_with(port, extra)
            .unwrap_or_else(|| panic!("redis-server exited at start on {port} (port taken?)"))
    }

    /// A redis-server on `port` with `extra` arguments, or `None` when it exits at once (another
    /// process took the port after it was found free).
    pub fn try_start_with(port: u16, extra: &[&str]) -> Option<RedisServer> {
        // A replica's full sync writes a file: in the system's temp directory, one per port
        // (a cluster node's own `--dir`, in `extra`, comes later and wins).
        let dir = std::env::temp_dir();
        let file = format!("ephaptic-test-{port}.rdb");
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .args(["--dir", dir.to_str().unwrap(), "--dbfilename", &file])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start redis-server ({e}): run ./test.sh, which installs it, or \
                     `apt-get install redis-server`"
                )
            });
        let mut server = RedisServer {
            port,
            child: Some(child),
            cluster: None,
        };
        server.wait_until_up().then_some(server)
    }
    pub fn url(&self) -> String {
        match &self.cluster {
            Some(cluster) => cluster.url(),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    /// Stands for `cluster` (its URL, subscribers and keys over its nodes).
    pub fn of(cluster: Cluster) -> RedisServer {
        RedisServer {
            port: cluster.ports[0],
            child: None,
            cluster: Some(cluster),
        }
    }

    /// The cluster this stands for (with `EPHAPTIC_TEST_REDIS=cluster`).
    pub fn cluster(&mut self) -> Option<&mut Cluster> {
        self.cluster.as_mut()
    }

    /// The ports of the Redis servers this stands for (one, or a cluster's masters).
    pub fn ports(&self) -> Vec<u16> {
        match &self.cluster {
            Some(cluster) => cluster.ports.clone(),
            None => vec![self.port],
        }
    }

    /// How many times each of this Redis's servers ran `command` (`INFO commandstats`), summed.
    pub fn calls(&self, command: &str) -> u64 {
        self.ports()
            .iter()
            .map(|port| calls_on(*port, command))
            .sum()
    }

    /// Waits until it answers `PING`; `false` when its process exited first.
    pub fn wait_until_up(&mut self) -> bool {
        use std::io::{Read, Write};
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                let mut pong = [0u8; 7];
                if s.write_all(b"PING\r\n").is_ok()
                    && s.read_exact(&mut pong).is_ok()
                    && &pong == b"+PONG\r\n"
                {
                    return true;
                }
            }
            if let Some(child) = self.child.as_mut()
                && child.try_wait().ok().flatten().is_some()
            {
                self.child = None;
                return false;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not come up on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `kill -9`: no shutdown, no goodbye to its clients.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// How many subscribers `channel` has (on a cluster, to its shard channel, over the nodes).
    pub async fn subscribers(&self, channel: &str) -> i64 {
        let mut n = 0;
        for port in self.ports() {
            let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
            let mut conn = client.get_multiplexed_async_connection().await.unwrap();
            let (_, count): (String, i64) = if self.cluster.is_some() {
                redis::cmd("PUBSUB")
                    .arg("SHARDNUMSUB")
                    .arg(sharded(channel))
                    .query_async(&mut conn)
                    .await
                    .unwrap()
            } else {
                redis::cmd("PUBSUB")
                    .arg("NUMSUB")
                    .arg(channel)
                    .query_async(&mut conn)
                    .await
                    .unwrap()
            };
            n += count;
        }
        n
    }

    /// The keys matching `pattern`, sorted (over a cluster's nodes).
    pub async fn keys(&self, pattern: &str) -> Vec<String> {
        let mut keys = Vec::new();
        for port in self.ports() {
            let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
            let mut conn = client.get_multiplexed_async_connection().await.unwrap();
            let found: Vec<String> = redis::cmd("KEYS")
                .arg(pattern)
                .query_async(&mut conn)
                .await
                .unwrap();
            keys.extend(found);
        }
        keys.sort();
        keys
    }

    /// Makes Redis hold every client's commands for `d` (`CLIENT PAUSE`).
    pub async fn pause(&self, d: Duration) {
        let client = redis::Client::open(self.url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let _: () = redis::cmd("CLIENT")
            .arg("PAUSE")
            .arg(d.as_millis() as u64)
            .arg("ALL")
            .query_async(&mut conn)
            .await
            .unwrap();
    }

    /// Waits until `channel` has `n` subscribers.
    pub async fn wait_subscribers(&self, channel: &str, n: i64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.subscribers(channel).await < n {
            assert!(
                Instant::now() < deadline,
                "{channel} never had {n} subscribers"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill9();
        let _ = std::fs::remove_file(
            std::env::temp_dir().join(format!("ephaptic-test-{}.rdb", self.port)),
        );
    }
}

/// The shard channel a Redis Cluster carries `channel` on (as the backplane names it).
pub fn sharded(channel: &str) -> String {
    let rest = if channel == "ephaptic:all" {
        "b"
    } else {
        channel.strip_prefix("ephaptic:").unwrap_or(channel)
    };
    format!("ephaptic:{{{rest}}}")
}

/// `redis-cli -p port args...`'s output (empty when it fails).
pub fn cli(port: u16, args: &[&str]) -> String {
    Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// How many times the server on `port` ran `command` (lower case, `INFO commandstats`).
pub fn calls_on(port: u16, command: &str) -> u64 {
    let stats = cli(port, &["INFO", "commandstats"]);
    let key = format!("cmdstat_{command}:calls=");
    stats
        .lines()
        .find_map(|l| l.strip_prefix(&key))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// A scratch directory for a cluster's or a sentinel's files, removed when dropped.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(what: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!(
            "ephaptic-{what}-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An ephaptic server on the Redis at `url` (any of the three kinds), its liveness probe every
/// 300 ms so that the tests see faults found quickly; returns its WebSocket URL.
pub async fn node(url: &str) -> String {
    super::start(
        ephaptic::Server::new()
            .redis(url)
            .redis_probe_interval(Duration::from_millis(300)),
    )
    .await
}
