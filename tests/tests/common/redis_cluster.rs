//! A Redis Cluster for the tests that run servers on one (`EPHAPTIC_TEST_REDIS=cluster`, and
//! the cluster-only tests of redis.rs): masters, and replicas if asked, on free loopback ports.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::redis_server::{RedisServer, Scratch, cli, free_port};

/// A Redis Cluster of `n` masters and no replicas, on free loopback ports (and free cluster-bus
/// ports), created with `redis-cli --cluster create`; its nodes are killed when dropped. A dead
/// node's slots fail alone: the others go on serving theirs (`cluster-require-full-coverage no`).
pub struct Cluster {
    pub ports: Vec<u16>,
    bus: Vec<u16>,
    nodes: Vec<RedisServer>,
    dir: Scratch,
}

impl Cluster {
    pub fn start(n: usize) -> Cluster {
        Cluster::start_with_replicas(n, 0)
    }

    /// `masters` masters, each with `replicas` replicas (`redis-cli --cluster create
    /// --cluster-replicas`): a replica takes over its master's slots when it dies.
    pub fn start_with_replicas(masters: usize, replicas: usize) -> Cluster {
        let n = masters * (1 + replicas);
        let dir = Scratch::new("cluster");
        let (mut ports, mut bus, mut nodes) = (Vec::new(), Vec::new(), Vec::new());
        while nodes.len() < n {
            // A port found free may be taken by another test before this node binds it: then
            // two others.
            let (port, bus_port) = (free_port(), free_port());
            if let Some(node) = Cluster::node(&dir, port, bus_port) {
                ports.push(port);
                bus.push(bus_port);
                nodes.push(node);
            }
        }
        let hosts: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&hosts)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli runs");
        assert!(created.success(), "redis-cli --cluster create failed");
        let cluster = Cluster {
            ports,
            bus,
            nodes,
            dir,
        };
        cluster.wait_ok();
        cluster
    }

    /// One node, its state in `dir` (so that a restart rejoins with its slots).
    fn node(dir: &Scratch, port: u16, bus: u16) -> Option<RedisServer> {
        let conf = dir.0.join(format!("nodes-{port}.conf"));
        RedisServer::try_start_with(
            port,
            &[
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                conf.to_str().unwrap(),
                "--cluster-port",
                &bus.to_string(),
                "--cluster-node-timeout",
                "2000",
                "--cluster-require-full-coverage",
                "no",
                // A replica takes over whatever its last contact with its master (the tests
                // kill masters a moment after their replicas synced), at once.
                "--cluster-replica-validity-factor",
                "0",
                "--repl-diskless-sync-delay",
                "0",
                "--dir",
                dir.0.to_str().unwrap(),
            ],
        )
    }

    /// Waits until every node says the cluster is ok.
    pub fn wait_ok(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        for port in &self.ports {
            while !cli(*port, &["CLUSTER", "INFO"]).contains("cluster_state:ok") {
                assert!(Instant::now() < deadline, "the cluster never became ok");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        format!("redis+cluster://{}", hosts.join(","))
    }

    /// `kill -9` of the node on `port`.
    pub fn kill9(&mut self, port: u16) {
        if let Some(node) = self.nodes.iter_mut().find(|n| n.port == port) {
            node.kill9();
        }
    }

    /// Starts the node on `port` again (it rejoins with its slots), once the cluster is ok.
    pub fn restart(&mut self, port: u16) {
        let i = self.ports.iter().position(|p| *p == port).unwrap();
        self.nodes[i] = Cluster::node(&self.dir, port, self.bus[i])
            .unwrap_or_else(|| panic!("the node on {port} did not start again"));
        self.wait_ok();
    }

    /// Moves the slot of `key` (and its keys) to another node, as `redis-cli --cluster reshard`
    /// does a slot at a time: IMPORTING, MIGRATING, MIGRATE of each key, then the new owner
    /// told to every node. Returns the new owner's port.
    pub fn move_slot_of(&self, key: &str) -> u16 {
        let slot = cli(self.ports[0], &["CLUSTER", "KEYSLOT", key])
            .trim()
            .to_owned();
        let from = self.holder(key).expect("the key exists");
        let to = *self.ports.iter().find(|p| **p != from).unwrap();
        let id = |port: u16| cli(port, &["CLUSTER", "MYID"]).trim().to_owned();
        let (from_id, to_id) = (id(from), id(to));
        cli(to, &["CLUSTER", "SETSLOT", &slot, "IMPORTING", &from_id]);
        cli(from, &["CLUSTER", "SETSLOT", &slot, "MIGRATING", &to_id]);
        let keys = cli(from, &["CLUSTER", "GETKEYSINSLOT", &slot, "1000"]);
        for k in keys.lines().filter(|k| !k.is_empty()) {
            cli(
                from,
                &["MIGRATE", "127.0.0.1", &to.to_string(), k, "0", "5000"],
            );
        }
        for port in [to, from].into_iter().chain(self.ports.iter().copied()) {
            cli(port, &["CLUSTER", "SETSLOT", &slot, "NODE", &to_id]);
        }
        assert_eq!(self.holder(key), Some(to), "the slot did not move");
        to
    }

    /// The node that holds `key`.
    pub fn holder(&self, key: &str) -> Option<u16> {
        self.ports
            .iter()
            .copied()
            .find(|p| cli(*p, &["EXISTS", key]).trim() == "1")
    }
}
