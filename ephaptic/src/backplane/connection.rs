//! The connection to Redis in use, whatever the [`Target`]: one server through redis-rs's
//! `ConnectionManager`; the master Sentinel names, through a `ConnectionManager` on it that is
//! replaced when Sentinel names another ([`Connection::follow`]); or a Redis Cluster through
//! redis-rs's `ClusterConnection`, whose pub/sub is sharded (`SSUBSCRIBE`/`SPUBLISH`, each
//! channel on the shard that owns its slot) and which re-subscribes by itself when the slots
//! move. Every mode carries pub/sub as RESP3 pushes on the connection that carries commands.
//!
//! What arrives goes to the backplane's [`Inbox`] under the channel names the rest of the
//! backplane uses: a cluster's shard channels (`channel::sharded`) are renamed back here, on the
//! way in; on the way out, by the commands that name them (here for subscriptions,
//! `redis_driver.rs` for publishes and the append script).

use std::sync::atomic::{AtomicU64, Ordering::Acquire, Ordering::Release};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;

use ::redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use ::redis::cluster::ClusterClientBuilder;
use ::redis::cluster_async::ClusterConnection;
use ::redis::sentinel::{Sentinel, SentinelNodeConnectionInfo};
use ::redis::{
    Client, Cmd, ConnectionInfo, Pipeline, ProtocolVersion, PushInfo, PushKind, RedisError,
    RedisFuture, RedisResult, Value,
};

use super::channel;
use super::driver::{Fault, FaultKind, Inbox};
use super::target::Target;

/// How long a command, or making a connection, may take before it counts as an outage.
const TIMEOUT: Duration = Duration::from_secs(2);

/// A connection to the engine in use: cheap to clone (every clone shares it).
#[derive(Clone)]
pub(crate) enum Conn {
    One(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::One(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::One(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::One(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

impl Conn {
    pub fn is_cluster(&self) -> bool {
        matches!(self, Conn::Cluster(_))
    }

    /// Subscribes to `channels` (on a cluster: their shard channels, each on its shard). On a
    /// cluster, an error comes with which channels were subscribed (the others' shards failed).
    pub async fn subscribe(&mut self, channels: &[String]) -> Result<(), (RedisError, Vec<bool>)> {
        match self {
            Conn::One(c) => c.subscribe(channels).await.map_err(|e| (e, Vec::new())),
            Conn::Cluster(c) => {
                sharded(channels, |name| {
                    let mut c = c.clone();
                    async move { c.ssubscribe(name).await }
                })
                .await
            }
        }
    }

    pub async fn unsubscribe(
        &mut self,
        channels: &[String],
    ) -> Result<(), (RedisError, Vec<bool>)> {
        match self {
            Conn::One(c) => c.unsubscribe(channels).await.map_err(|e| (e, Vec::new())),
            Conn::Cluster(c) => {
                sharded(channels, |name| {
                    let mut c = c.clone();
                    async move { c.sunsubscribe(name).await }
                })
                .await
            }
        }
    }
}

/// Runs `command` on the shard channel of each of `channels`, at once: a cluster refuses a
/// command whose channels are in several slots, and each of ours has its own hash tag. An error
/// comes with which channels it worked for.
async fn sharded<F, Fut>(channels: &[String], command: F) -> Result<(), (RedisError, Vec<bool>)>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = RedisResult<()>>,
{
    let done =
        futures_util::future::join_all(channels.iter().map(|name| command(channel::sharded(name))))
            .await;
    let worked: Vec<bool> = done.iter().map(Result::is_ok).collect();
    match done.into_iter().find_map(Result::err) {
        Some(e) => Err((e, worked)),
        None => Ok(()),
    }
}

/// How the connection is (re)made.
enum Way {
    One(Client),
    Sentinel {
        /// Locked across the sentinels' round trips: one question at a time.
        sentinel: tokio::sync::Mutex<Sentinel>,
        master: String,
        node: SentinelNodeConnectionInfo,
    },
    Cluster(Vec<ConnectionInfo>),
}

/// The connection in use, and how to make the next.
pub(crate) struct Connection {
    way: Way,
    /// The connection in use, and (with Sentinel) the master it talks to.
    current: Mutex<Option<(Conn, String)>>,
    /// One connection made at a time.
    making: tokio::sync::Mutex<()>,
    inbox: OnceLock<Weak<dyn Inbox>>,
    /// The generation of the connection in use: what an older one (being let go after
    /// [`renew`](Connection::renew)) pushes is not handed on.
    generation: Arc<AtomicU64>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn resp3(info: ConnectionInfo) -> ConnectionInfo {
    let settings = info
        .redis_settings()
        .clone()
        .set_protocol(ProtocolVersion::RESP3);
    info.set_redis_settings(settings)
}

impl Connection {
    pub fn new(target: Target) -> Result<Self, String> {
        let way = match target {
            Target::Single(info) => {
                Way::One(Client::open(resp3(info)).map_err(|e| format!("it cannot be used: {e}"))?)
            }
            Target::Sentinel {
                sentinels,
                master,
                node,
            } => {
                let sentinel = Sentinel::build(sentinels)
                    .map_err(|e| format!("its sentinels cannot be used: {e}"))?;
                let node = SentinelNodeConnectionInfo::default()
                    .set_redis_connection_info(resp3(node).redis_settings().clone());
                Way::Sentinel {
                    sentinel: tokio::sync::Mutex::new(sentinel),
                    master,
                    node,
                }
            }
            Target::Cluster { nodes } => Way::Cluster(nodes.into_iter().map(resp3).collect()),
        };
        Ok(Connection {
            way,
            current: Mutex::new(None),
            making: tokio::sync::Mutex::new(()),
            inbox: OnceLock::new(),
            generation: Arc::new(AtomicU64::new(0)),
        })
    }

    pub fn attach(&self, inbox: Weak<dyn Inbox>) {
        let _ = self.inbox.set(inbox);
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self.way, Way::Cluster(_))
    }

    /// The connection in use, made when there is none (for one server, lazily: an unreachable
    /// Redis is not an error here, its commands fail).
    pub async fn get(&self) -> Result<Conn, Fault> {
        if let Some((conn, _)) = &*lock(&self.current) {
            return Ok(conn.clone());
        }
        let _making = self.making.lock().await;
        if let Some((conn, _)) = &*lock(&self.current) {
            return Ok(conn.clone());
        }
        let made = match &self.way {
            Way::One(client) => (Conn::One(self.manager(client.clone())), String::new()),
            Way::Sentinel { .. } => {
                let (client, at) = self.master().await?;
                (Conn::One(self.manager(client)), at)
            }
            Way::Cluster(nodes) => {
                let generation = self.generation.load(Acquire);
                (
                    Conn::Cluster(self.cluster(nodes, generation).await?),
                    String::new(),
                )
            }
        };
        *lock(&self.current) = Some(made.clone());
        Ok(made.0)
    }

    /// Asks the sentinels where the master is now; when it moved, the connection in use is
    /// replaced by one to the new master (which has none of the old one's subscriptions) and
    /// the new master's address is returned. Without Sentinel, `None`.
    pub async fn follow(&self) -> Result<Option<String>, Fault> {
        if !matches!(self.way, Way::Sentinel { .. }) {
            return Ok(None);
        }
        let _making = self.making.lock().await;
        let (client, at) = self.master().await?;
        let mut current = lock(&self.current);
        if current.as_ref().is_some_and(|(_, was)| *was == at) {
            return Ok(None);
        }
        let moved = current.is_some();
        *current = Some((Conn::One(self.manager(client)), at.clone()));
        Ok(moved.then_some(at))
    }

    /// On a Redis Cluster, once every primary answers: a new cluster connection, subscribed to
    /// all of `channels`, replaces the one in use, whose pushes are no longer handed on from
    /// then. After a node was lost, redis-rs's own repair of that node's subscriptions cannot
    /// be relied on (it confirms some that do not receive); a new connection starts with none
    /// of that state. `true` when it was replaced; an error (a node still down, a subscription
    /// refused) leaves the one in use.
    pub async fn renew(&self, channels: &[String]) -> Result<bool, Fault> {
        let Way::Cluster(nodes) = &self.way else {
            return Ok(false);
        };
        let mut current = self.get().await?;
        // PING goes to every primary: all must answer.
        ::redis::cmd("PING")
            .query_async::<Value>(&mut current)
            .await
            .map_err(|e| Fault::from(&e))?;
        let _making = self.making.lock().await;
        let next = self.generation.load(Acquire) + 1;
        let mut fresh = Conn::Cluster(self.cluster(nodes, next).await?);
        for chunk in channels.chunks(1024) {
            fresh
                .subscribe(chunk)
                .await
                .map_err(|(e, _)| Fault::from(&e))?;
        }
        *lock(&self.current) = Some((fresh, String::new()));
        self.generation.store(next, Release);
        Ok(true)
    }

    /// Lets go of the connection in use (the next [`get`](Self::get) makes another); returns it.
    pub fn replace(&self) -> Option<Conn> {
        lock(&self.current).take().map(|(conn, _)| conn)
    }

    /// The master the sentinels name (checked by redis-rs: it must say it is a master), and
    /// its address.
    async fn master(&self) -> Result<(Client, String), Fault> {
        let Way::Sentinel {
            sentinel,
            master,
            node,
        } = &self.way
        else {
            unreachable!("only with Sentinel")
        };
        let asked = async {
            let mut sentinel = sentinel.lock().await;
            sentinel.async_master_for(master, Some(node)).await
        };
        let client = match tokio::time::timeout(TIMEOUT, asked).await {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => {
                return Err(Fault::new(
                    FaultKind::Unreachable,
                    format!("no sentinel names a reachable master `{master}` ({e})"),
                ));
            }
            Err(_) => {
                return Err(Fault::new(
                    FaultKind::Timeout,
                    format!("the sentinels did not name master `{master}` in time"),
                ));
            }
        };
        let at = client.get_connection_info().addr().to_string();
        Ok((client, at))
    }

    /// Where pushes go: messages (renamed from a shard channel) and lost connections.
    /// (On a cluster, only while the connection of generation `generation` is the one in use.)
    fn pushes(
        &self,
        cluster: bool,
        generation: u64,
    ) -> impl Fn(PushInfo) -> Result<(), ()> + Send + Sync + 'static {
        let inbox = self.inbox.get().cloned();
        let current = self.generation.clone();
        move |info: PushInfo| {
            let Some(inbox) = inbox.as_ref().and_then(Weak::upgrade) else {
                return Ok(());
            };
            if cluster && current.load(Acquire) != generation {
                return Ok(());
            }
            match info.kind {
                PushKind::Message => {
                    if let [Value::BulkString(channel), Value::BulkString(body)] = &info.data[..] {
                        inbox.message(channel, body);
                    }
                }
                PushKind::SMessage => {
                    if let [Value::BulkString(channel), Value::BulkString(body)] = &info.data[..]
                        && let Some(channel) = channel::unsharded(channel)
                    {
                        inbox.message(channel.as_bytes(), body);
                    }
                }
                // A cluster moved the slot of a shard channel: the node that had it ends its
                // subscriptions (as it does to confirm ours).
                PushKind::SUnsubscribe if cluster => {
                    if let Some(Value::BulkString(channel)) = info.data.first()
                        && let Some(channel) = channel::unsharded(channel)
                    {
                        inbox.unsubscribed(channel.as_bytes());
                    }
                }
                // The connection re-subscribes by itself; until it has, this server hears
                // nothing from the others on it. A cluster's other nodes work on.
                PushKind::Disconnection if cluster => inbox.part_lost(),
                PushKind::Disconnection => inbox.disconnected(),
                _ => {}
            }
            Ok(())
        }
    }

    /// A lazy, RESP3 connection manager on one server, re-subscribing by itself after a
    /// reconnect; subscription confirmations are command replies.
    fn manager(&self, client: Client) -> ConnectionManager {
        let config = ConnectionManagerConfig::new()
            .set_push_sender(self.pushes(false, 0))
            .set_automatic_resubscription()
            .set_connection_timeout(Some(TIMEOUT))
            .set_response_timeout(Some(TIMEOUT))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(100))
            .set_max_delay(Duration::from_secs(1));
        ConnectionManager::new_lazy_with_config(client, config)
            .expect("a RESP3 client with a push sender")
    }

    /// A cluster connection: it finds the slots from any node that answers.
    async fn cluster(
        &self,
        nodes: &[ConnectionInfo],
        generation: u64,
    ) -> Result<ClusterConnection, Fault> {
        let mut builder = ClusterClientBuilder::new(nodes.to_vec())
            .use_protocol(ProtocolVersion::RESP3)
            .push_sender(self.pushes(true, generation))
            .connection_timeout(TIMEOUT)
            .response_timeout(TIMEOUT)
            .retries(2);
        // The user and password of the URL are on every node (ClusterClientBuilder takes
        // them from the first).
        if let Some(first) = nodes.first() {
            if let Some(user) = first.redis_settings().username() {
                builder = builder.username(user);
            }
            if let Some(password) = first.redis_settings().password() {
                builder = builder.password(password);
            }
        }
        let client = builder
            .build()
            .map_err(|e| Fault::new(FaultKind::Refused, format!("the cluster's nodes: {e}")))?;
        match tokio::time::timeout(TIMEOUT * 2, client.get_async_connection()).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(Fault::new(
                FaultKind::Unreachable,
                format!("no node of the Redis Cluster answers ({e})"),
            )),
            Err(_) => Err(Fault::new(
                FaultKind::Timeout,
                "the Redis Cluster did not answer in time",
            )),
        }
    }
}
