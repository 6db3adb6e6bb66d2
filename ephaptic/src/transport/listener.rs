//! What [`serve`](crate::Server::serve) puts between the TCP listener and axum: admission (the
//! connection caps, in total and per peer address, checked before a byte is read) and a thin
//! wrapper around each accepted socket that enforces what axum and hyper do not:
//!
//! - a deadline for the HTTP upgrade, and then one for the first message after it, so
//!   connections that send a partial request slowly, or nothing at all, do not hold a
//!   descriptor and a task for ever;
//! - the process-wide [memory budget](crate::session::budget) for an unfinished inbound
//!   message: the WebSocket layer buffers a fragmented (or a large single-frame) message until
//!   it is whole, so the bytes read since the last whole message are what it holds. Beyond the
//!   connection's free allowance they are charged to the budget, and a read that finds it
//!   spent fails, which closes that connection and no other.
//!
//! The wrapper costs a connection that is open and has sent its first message one branch per
//! read and one uncontended atomic add; the timer exists only until that first message.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, Sleep};

use crate::runtime::Refusals;
use crate::session::MemoryBudget;
use crate::session::budget::chargeable;

/// The caps [`Admission`] enforces.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Caps {
    pub total: usize,
    pub per_peer: Option<usize>,
    pub handshake: Duration,
    pub first_message: Duration,
}

/// Counts the connections that are open (TCP, upgraded or not), in total and per peer address.
#[derive(Debug)]
pub(crate) struct Admission {
    caps: Caps,
    total: AtomicUsize,
    per_peer: Mutex<HashMap<IpAddr, usize>>,
    refusals: Arc<Refusals>,
    memory: Arc<MemoryBudget>,
}

impl Admission {
    pub fn new(caps: Caps, memory: Arc<MemoryBudget>, refusals: Arc<Refusals>) -> Arc<Self> {
        Arc::new(Admission {
            caps,
            total: AtomicUsize::new(0),
            per_peer: Mutex::new(HashMap::new()),
            refusals,
            memory,
        })
    }

    /// Open connections right now.
    pub fn open(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    /// A place for a connection from `ip`, or `None` when a cap is reached.
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Place> {
        if self.total.fetch_add(1, Ordering::AcqRel) >= self.caps.total {
            self.total.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        if let Some(cap) = self.caps.per_peer {
            let mut peers = self.per_peer.lock().unwrap_or_else(|e| e.into_inner());
            let n = peers.entry(ip).or_insert(0);
            if *n >= cap {
                drop(peers);
                self.total.fetch_sub(1, Ordering::AcqRel);
                return None;
            }
            *n += 1;
        }
        Some(Place {
            admission: self.clone(),
            ip,
        })
    }
}

/// A connection's place in the counts, given back when its socket is dropped.
#[derive(Debug)]
struct Place {
    admission: Arc<Admission>,
    ip: IpAddr,
}

impl Drop for Place {
    fn drop(&mut self) {
        let a = &self.admission;
        if a.caps.per_peer.is_some() {
            let mut peers = a.per_peer.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(n) = peers.get_mut(&self.ip) {
                *n -= 1;
                if *n == 0 {
                    peers.remove(&self.ip);
                    // The map keeps its peak capacity otherwise.
                    if peers.capacity() > 64 && peers.len() < peers.capacity() / 4 {
                        peers.shrink_to_fit();
                    }
                }
            }
        }
        a.total.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Where a connection is in its opening, as the wrapper's deadline sees it.
const ACCEPTED: u8 = 0;
const UPGRADED: u8 = 1;
const OPEN: u8 = 2;

/// What the connection's task and its socket wrapper share: the opening stage and the bytes
/// of the unfinished inbound message.
#[derive(Debug)]
pub(crate) struct Meter {
    stage: AtomicU8,
    /// Bytes read since the last whole data message.
    unfinished: AtomicUsize,
    /// How many of them are charged to the memory budget.
    charged: AtomicUsize,
    /// Whether it ever charged any (then its close asks the allocator to trim).
    ever_charged: AtomicBool,
    /// The budget refused what the open WebSocket read: it is no longer read, and the pump
    /// closes it with a close code (it used to be dropped without one).
    refused: AtomicBool,
    memory: Arc<MemoryBudget>,
}

impl Meter {
    /// The HTTP upgrade is done: the first-message deadline starts, and what the HTTP request
    /// took is no longer held (hyper has freed it).
    pub fn upgraded(&self) {
        self.stage.store(UPGRADED, Ordering::Relaxed);
        self.unfinished.store(0, Ordering::Relaxed);
        self.memory.release(self.charged.swap(0, Ordering::Relaxed));
    }

    /// A whole data message was read: what was buffered for it is free, and the connection is
    /// open (its deadline is gone).
    #[inline]
    pub fn message_read(&self) {
        self.stage.store(OPEN, Ordering::Relaxed);
        self.unfinished.store(0, Ordering::Relaxed);
        if self.charged.load(Ordering::Relaxed) > 0 {
            self.memory.release(self.charged.swap(0, Ordering::Relaxed));
        }
    }

    /// A control frame (ping, pong) of `payload` bytes was read: only its own bytes are free,
    /// since it may arrive between the fragments of a message still being buffered.
    #[inline]
    pub fn control_read(&self, payload: usize) {
        // A client's control frame: 2 header bytes, a 4-byte mask, at most 125 payload bytes.
        let own = payload + 6;
        let _ = self
            .unfinished
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_sub(own))
            });
    }

    /// Whether the memory budget refused what this open WebSocket read: its pump closes it
    /// with close code 1013 (try again later).
    pub fn refused(&self) -> bool {
        self.refused.load(Ordering::Relaxed)
    }

    /// Counts `n` bytes read; `false` when the memory budget has no room for them.
    fn read(&self, n: usize) -> bool {
        // Only the connection's own task reads and resets it (hyper's, then the pump's, over
        // HTTP/1.1, the only protocol the server speaks): a load and a store suffice.
        let unfinished = self.unfinished.load(Ordering::Relaxed) + n;
        self.unfinished.store(unfinished, Ordering::Relaxed);
        let want = chargeable(unfinished);
        let charged = self.charged.load(Ordering::Relaxed);
        if want <= charged {
            return true;
        }
        if !self.memory.try_charge(want - charged) {
            return false;
        }
        self.charged.store(want, Ordering::Relaxed);
        self.ever_charged.store(true, Ordering::Relaxed);
        true
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        self.memory.release(*self.charged.get_mut());
        if *self.ever_charged.get_mut() {
            // The socket's buffers (a read buffer grown for a large message, what was decoded
            // from it) go with it.
            self.memory.holder_closed();
        }
    }
}

/// An accepted socket with its deadline, its meter and its place in the counts.
#[derive(Debug)]
pub(crate) struct Guarded {
    tcp: TcpStream,
    meter: Arc<Meter>,
    /// Until the first message: the deadline of the stage `deadline_stage`.
    deadline: Option<Pin<Box<Sleep>>>,
    deadline_stage: u8,
    first_message: Duration,
    refusals: Arc<Refusals>,
    /// While the unfinished message is charged to the budget: since when, and the bytes read
    /// since then (a message that holds the budget must keep arriving).
    charging: Option<(Instant, usize)>,
    _place: Place,
}

/// How fast a message that holds budget must keep arriving, after a grace period: a client
/// trickling a large message cannot hold its share of the budget for ever.
const MIN_RATE: f64 = 16.0 * 1024.0;
const RATE_GRACE: Duration = Duration::from_secs(10);

impl Guarded {
    /// Checks the opening deadline; `Err` once it passed. Once the first message is read there
    /// is none, and this is one branch.
    #[inline]
    fn check_deadline(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if self.deadline.is_none() {
            return Ok(());
        }
        self.check_opening(cx)
    }

    #[cold]
    fn check_opening(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let Some(deadline) = &mut self.deadline else {
            return Ok(());
        };
        let stage = self.meter.stage.load(Ordering::Relaxed);
        if stage == OPEN {
            self.deadline = None;
            return Ok(());
        }
        if stage != self.deadline_stage {
            self.deadline_stage = stage;
            deadline.as_mut().reset(Instant::now() + self.first_message);
        }
        if deadline.as_mut().poll(cx).is_ready() {
            self.deadline = None;
            self.refusals.timeouts.fetch_add(1, Ordering::Relaxed);
            let what = if stage == ACCEPTED {
                "finish its WebSocket upgrade"
            } else {
                "send a first message"
            };
            tracing::debug!("closing a connection that took too long to {what}");
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the client took too long to {what}"),
            ));
        }
        Ok(())
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check_deadline(cx)?;
        if this.meter.refused() {
            // Read no more: the pump is closing it (the first refusal woke it).
            return Poll::Pending;
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.tcp).poll_read(cx, buf))?;
        let n = buf.filled().len() - before;
        if n == 0 {
            return Poll::Ready(Ok(()));
        }
        if !this.meter.read(n) {
            if this.meter.stage.load(Ordering::Relaxed) == ACCEPTED {
                // Still HTTP: no WebSocket to say why on.
                tracing::warn!(
                    memory_budget = this.meter.memory.limit(),
                    "closing a connection whose upgrade request would exceed the server's \
                     memory budget for buffered bytes (Server::memory_budget)"
                );
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::OutOfMemory,
                    "the server's memory budget for buffered messages is spent",
                )));
            }
            // An open WebSocket: its pump says why with a close frame (1013). What was just
            // read is not handed on, and nothing more is read.
            tracing::warn!(
                memory_budget = this.meter.memory.limit(),
                "closing a connection (1013) whose unfinished message would exceed the server's \
                 memory budget for buffered bytes (Server::memory_budget)"
            );
            buf.set_filled(before);
            this.meter.refused.store(true, Ordering::Relaxed);
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        if this.meter.charged.load(Ordering::Relaxed) == 0 {
            this.charging = None;
        } else {
            let now = Instant::now();
            let (since, got) = this.charging.get_or_insert((now, 0));
            *got += n;
            let late = now.duration_since(*since).saturating_sub(RATE_GRACE);
            if (*got as f64) < MIN_RATE * late.as_secs_f64() {
                tracing::debug!("closing a connection whose large message arrives too slowly");
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "a large message arrived too slowly",
                )));
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Guarded {
    // The deadline is checked on writes too: a client that never reads makes hyper (and the
    // pump) stop reading from it, and only writes are polled then.
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check_deadline(cx)?;
        Pin::new(&mut this.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check_deadline(cx)?;
        Pin::new(&mut this.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check_deadline(cx)?;
        Pin::new(&mut this.tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

/// The TCP listener [`serve`](crate::Server::serve) hands axum.
pub(crate) struct Listener {
    tcp: TcpListener,
    admission: Arc<Admission>,
    /// When the last refusal was logged (one line per second at most).
    last_refusal_log: Option<Instant>,
}

impl Listener {
    pub fn new(tcp: TcpListener, admission: Arc<Admission>) -> Self {
        Listener {
            tcp,
            admission,
            last_refusal_log: None,
        }
    }

    fn note_refusal(&mut self, ip: IpAddr) {
        let a = &self.admission;
        let n = a.refusals.connections.fetch_add(1, Ordering::Relaxed) + 1;
        let now = Instant::now();
        if self
            .last_refusal_log
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
        {
            self.last_refusal_log = Some(now);
            tracing::warn!(
                open = a.open(),
                max_connections = a.caps.total,
                max_connections_per_peer = a.caps.per_peer,
                %ip,
                "refusing connections at a connection cap ({n} so far; Server::max_connections, \
                 Server::max_connections_per_peer)"
            );
        }
    }
}

impl axum::serve::Listener for Listener {
    type Io = Guarded;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Guarded, SocketAddr) {
        loop {
            let (tcp, addr) = match self.tcp.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            };
            let Some(place) = self.admission.admit(peer_key(addr.ip())) else {
                // Dropped at once: closed before a byte is read.
                self.note_refusal(addr.ip());
                continue;
            };
            // Replies and events are small frames that must leave at once: no Nagle delay.
            let _ = tcp.set_nodelay(true);
            let a = &self.admission;
            let meter = Arc::new(Meter {
                stage: AtomicU8::new(ACCEPTED),
                unfinished: AtomicUsize::new(0),
                charged: AtomicUsize::new(0),
                ever_charged: AtomicBool::new(false),
                refused: AtomicBool::new(false),
                memory: a.memory.clone(),
            });
            let guarded = Guarded {
                tcp,
                meter,
                deadline: Some(Box::pin(tokio::time::sleep(a.caps.handshake))),
                deadline_stage: ACCEPTED,
                first_message: a.caps.first_message,
                refusals: a.refusals.clone(),
                charging: None,
                _place: place,
            };
            return (guarded, addr);
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}

/// What the per-peer cap counts by: the IPv4 address, or the /64 an IPv6 host gets (one host
/// can pick any address in it).
fn peer_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(std::net::Ipv6Addr::from(bits))
            }
        },
        v4 => v4,
    }
}

/// A failed accept: a client that gave up before it was accepted is nothing to wait for; a
/// lack of descriptors or memory is waited out instead of retried in a spin.
async fn accept_failed(e: io::Error) {
    use io::ErrorKind::*;
    if matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    ) {
        return;
    }
    tracing::error!("accepting a connection failed: {e}; trying again in a second");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// What axum hands each request of a connection accepted by [`Listener`] (as `ConnectInfo`):
/// the peer and the connection's meter.
#[derive(Debug, Clone)]
pub(crate) struct Accepted {
    pub peer: SocketAddr,
    pub meter: Arc<Meter>,
}

impl Connected<IncomingStream<'_, Listener>> for Accepted {
    fn connect_info(stream: IncomingStream<'_, Listener>) -> Self {
        Accepted {
            peer: *stream.remote_addr(),
            meter: stream.io().meter.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_are_counted_by_ipv4_address_and_ipv6_slash_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(peer_key(a), peer_key(b), "one host's /64");
        assert_ne!(peer_key(a), peer_key(other));
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(peer_key(v4), v4);
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(peer_key(mapped), v4);
    }
}
