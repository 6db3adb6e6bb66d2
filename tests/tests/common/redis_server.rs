//! A real redis-server for the tests that run servers on Redis (redis.rs, presence.rs): started on
//! a free loopback port (or a given one), killed when dropped.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
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

impl RedisServer {
    pub fn start() -> RedisServer {
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
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start redis-server ({e}): run ./test.sh, which installs it, or \
                     `apt-get install redis-server`"
                )
            });
        let server = RedisServer {
            port,
            child: Some(child),
        };
        server.wait_until_up();
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn wait_until_up(&self) {
        use std::io::{Read, Write};
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                let mut pong = [0u8; 7];
                if s.write_all(b"PING\r\n").is_ok()
                    && s.read_exact(&mut pong).is_ok()
                    && &pong == b"+PONG\r\n"
                {
                    return;
                }
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

    /// How many subscribers `channel` has.
    pub async fn subscribers(&self, channel: &str) -> i64 {
        let client = redis::Client::open(self.url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let (_, n): (String, i64) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(channel)
            .query_async(&mut conn)
            .await
            .unwrap();
        n
    }

    /// The keys matching `pattern`, sorted.
    pub async fn keys(&self, pattern: &str) -> Vec<String> {
        let client = redis::Client::open(self.url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let mut keys: Vec<String> = redis::cmd("KEYS")
            .arg(pattern)
            .query_async(&mut conn)
            .await
            .unwrap();
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
    }
}
