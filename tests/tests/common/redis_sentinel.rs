//! Redis Sentinel for the failover tests: one sentinel watching a master, on a free loopback
//! port.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::redis_server::{Scratch, cli, free_port};

/// One sentinel watching the master on `master` under `name`, on a free loopback port; killed
/// when dropped. It notices a dead master after a second (`down-after-milliseconds 1000`).
pub struct Sentinel {
    pub port: u16,
    child: Option<Child>,
    _dir: Scratch,
}

impl Sentinel {
    pub fn start(master: u16, name: &str) -> Sentinel {
        let dir = Scratch::new("sentinel");
        let port = free_port();
        let conf = dir.0.join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\nprotected-mode no\ndir {dir}\n\
                 sentinel monitor {name} 127.0.0.1 {master} 1\n\
                 sentinel down-after-milliseconds {name} 1000\n\
                 sentinel failover-timeout {name} 10000\n",
                dir = dir.0.display()
            ),
        )
        .unwrap();
        // Debian's redis-sentinel; redis-server in sentinel mode is the same program.
        let mut command = if Command::new("redis-sentinel")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok()
        {
            Command::new("redis-sentinel")
        } else {
            let mut c = Command::new("redis-server");
            c.arg("--sentinel");
            c
        };
        let child = command
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-sentinel starts (./test.sh installs it)");
        let sentinel = Sentinel {
            port,
            child: Some(child),
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !cli(port, &["SENTINEL", "get-master-addr-by-name", name])
            .contains(&master.to_string())
        {
            assert!(Instant::now() < deadline, "the sentinel never came up");
            std::thread::sleep(Duration::from_millis(20));
        }
        sentinel
    }

    /// Waits until the sentinel knows `n` healthy replicas of `name`.
    pub fn wait_replicas(&self, name: &str, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let replicas = cli(self.port, &["SENTINEL", "replicas", name]);
            let healthy = replicas.lines().filter(|l| *l == "slave").count();
            if healthy >= n && !replicas.contains("s_down") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the sentinel never saw {n} replica(s): {replicas}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The master's port as the sentinel names it now.
    pub fn master_port(&self, name: &str) -> Option<u16> {
        cli(self.port, &["SENTINEL", "get-master-addr-by-name", name])
            .lines()
            .nth(1)
            .and_then(|p| p.trim().parse().ok())
    }

    pub fn url(&self, name: &str) -> String {
        format!("redis+sentinel://127.0.0.1:{}/{name}", self.port)
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
