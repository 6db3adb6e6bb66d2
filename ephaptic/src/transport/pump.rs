//! The task that serves one connection: it reads frames and hands them to the runtime's
//! [`Session`] (running each call's first poll inline, see `runtime::dispatch`), drains the
//! outbound queue into the socket and flushes when it has nothing else to do, sends pings and
//! watches for idleness. Replies to the frames of one read therefore leave in one write, and
//! a call that finishes at once costs no task and no wake-up of another thread. The queue
//! still carries every frame (so events, streams and calls running in tasks of their own are
//! ordered and bounded); only its consumer is this task. A close request wins over
//! everything, even a write stuck on a client that stopped reading.
//!
//! Generic over the socket (any `Stream` + `Sink` of axum WebSocket messages), so that the
//! unit tests below drive it over an in-memory socket.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message};
use bytes::Bytes;
use futures_util::task::AtomicWaker;
use futures_util::{Sink, SinkExt, Stream};
use tokio::time::Instant;

use super::listener::Meter;
use crate::runtime::Session;
use crate::session::credentials::SESSION_ENDED;
use crate::session::{CloseSignal, Outbox, Receiver};

/// Close code for a message too large to buffer (RFC 6455).
const CLOSE_TOO_BIG: u16 = 1009;
/// Close code "going away": the server shuts down.
const GOING_AWAY: u16 = 1001;
/// Close code "try again later" (RFC 6455 registry): the server's memory budget is spent.
const TRY_AGAIN_LATER: u16 = 1013;
/// How many frames are written before a flush even if more are waiting, so one busy connection
/// cannot starve its own socket of flushes.
const MAX_BATCH: usize = 64;
/// The most answers' room an idle connection keeps in its outbox (32 bytes each).
const OUTBOX_KEPT: usize = 8;

/// What the pump needs of a socket: WebSocket messages in and out.
pub(crate) trait Socket:
    Stream<Item = Result<Message, axum::Error>> + Sink<Message, Error = axum::Error> + Unpin
{
}

impl<T> Socket for T where
    T: Stream<Item = Result<Message, axum::Error>> + Sink<Message, Error = axum::Error> + Unpin
{
}

/// Serves one connection over `ws` until either side closes it, then ends its session.
pub(crate) async fn run<W: Socket>(
    mut session: Session,
    ws: W,
    rx: Receiver,
    ping: Option<Duration>,
    meter: Option<Arc<Meter>>,
) {
    // Until the very end, after the close frame: a shutdown waits for it.
    let _live = session.live();
    let close = session.close_signal();
    // Pinned once: waiting on it registers with the signal once, not once per frame.
    let closing = std::pin::pin!(close.wait());
    let ticker = ping.map(|every| tokio::time::interval_at(Instant::now() + every, every));
    let read_wake = Arc::new(ReadWake {
        ready: AtomicBool::new(true),
        task: AtomicWaker::new(),
    });
    let mut pump = Pump {
        read_waker: Waker::from(read_wake.clone()),
        read_wake,
        ws,
        rx,
        meter,
        closing,
        ticker,
        unflushed: 0,
        outbox: Outbox::new(),
        sent: 0,
        read_since_tick: false,
        silent_ticks: 0,
        stuck_ticks: 0,
    };

    let end = loop {
        match std::future::poll_fn(|cx| pump.poll(cx, &mut session)).await {
            // Boxed: it happens once, and unboxed it would grow every connection's task by
            // the identity loader's future.
            Step::Init(init) => Box::pin(session.authenticate(init, &mut pump.outbox)).await,
            Step::End(end) => break end,
        }
    };

    session.end();
    let Pump {
        ws,
        rx,
        mut outbox,
        sent,
        ..
    } = pump;
    outbox.drain(..sent);
    // Boxed: it runs once, and inline it would grow every connection's task.
    Box::pin(finish(ws, rx, outbox, &close, end)).await;
}

/// The state of a connection's task between wake-ups. Its [`poll`](Pump::poll) does all the
/// work there is (writes, reads, a flush, a ping) and returns only when the connection ends,
/// when an `init` needs the identity loader, or when there is nothing to do. Written as a poll
/// function rather than a `select!` loop so that each source is polled once per wake-up: a
/// socket read that found nothing is not retried until the socket is readable again (each
/// attempt costs the WebSocket layer a 4 KiB buffer clear), and the queue, the close signal and
/// the ping timer are not re-registered per frame.
struct Pump<W, C> {
    ws: W,
    /// Whether the socket may have something to read, and the waker its reads register.
    read_wake: Arc<ReadWake>,
    read_waker: Waker,
    rx: Receiver,
    /// What the socket's wrapper counts (with `serve`; `None` under a router served by the
    /// app): told when a message is whole.
    meter: Option<Arc<Meter>>,
    closing: C,
    ticker: Option<tokio::time::Interval>,
    /// Frames written into the socket's buffer since the last flush.
    unflushed: usize,
    /// Immediate answers to what was read; `sent` of them are written.
    outbox: Outbox,
    sent: usize,
    /// Idleness, checked at each ping: whether anything was read since the last one, and for
    /// how many pings in a row nothing was.
    read_since_tick: bool,
    silent_ticks: u32,
    /// For how many pings in a row the socket took nothing while frames waited: a client that
    /// does not read (or reads too slowly) is disconnected after two, so what waits for it is
    /// not held for ever.
    stuck_ticks: u32,
}

/// The waker a connection's socket reads register: it notes that the socket may be readable,
/// then wakes the connection's task.
struct ReadWake {
    ready: AtomicBool,
    task: AtomicWaker,
}

impl Wake for ReadWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.ready.store(true, Ordering::Release);
        self.task.wake();
    }
}

/// Why a connection's task stopped pumping.
enum Step {
    /// The first frame needs the identity loader: run it, then go on.
    Init(crate::runtime::Init),
    End(End),
}

impl<W: Socket, C: Future<Output = (u16, String)> + Unpin> Pump<W, C> {
    fn poll(&mut self, cx: &mut Context<'_>, session: &mut Session) -> Poll<Step> {
        // The socket's read waker wakes this task through `read_wake`: registered once per
        // poll, before the readable flag is first looked at.
        self.read_wake.task.register(cx.waker());
        loop {
            if let Poll::Ready(why) = Pin::new(&mut self.closing).poll(cx) {
                return Poll::Ready(Step::End(End::Close(why)));
            }

            // 1. Write what waits: the answers to the last read, then the queue.
            let blocked = match self.write(cx, session) {
                Ok(blocked) => blocked,
                Err(end) => return Poll::Ready(Step::End(end)),
            };

            // A message the memory budget refused: the connection is closed with why, whether or
            // not its socket takes writes now (the close waits its turn like any frame).
            if self.meter.as_deref().is_some_and(Meter::refused) {
                return Poll::Ready(Step::End(End::Close((
                    TRY_AGAIN_LATER,
                    "the server's memory for buffered messages is spent (Server::memory_budget); try again later".into(),
                ))));
            }

            // 2. Read, unless the socket will not take more: a client that does not read its
            // answers is not read from (its own backpressure), and nothing else waits on it.
            // Only when the socket may have something: a wake-up for a queued event does not
            // try a read that would find nothing (and cost the WebSocket layer a 4 KiB buffer
            // clear per attempt).
            if !blocked && self.read_wake.ready.swap(false, Ordering::AcqRel) {
                let mut handled = 0;
                let mut read_cx = Context::from_waker(&self.read_waker);
                let _lap = session.reading();
                loop {
                    if handled == MAX_BATCH {
                        // More may be buffered: look again after writing the answers.
                        self.read_wake.ready.store(true, Ordering::Release);
                        break;
                    }
                    match Pin::new(&mut self.ws).poll_next(&mut read_cx) {
                        Poll::Ready(msg) => {
                            handled += 1;
                            let step =
                                on_message(msg, session, &mut self.outbox, self.meter.as_deref());
                            if let Some(step) = step {
                                // Whatever follows is read when the pump resumes.
                                self.read_wake.ready.store(true, Ordering::Release);
                                return Poll::Ready(step);
                            }
                        }
                        Poll::Pending => break,
                    }
                }
                if handled > 0 {
                    self.read_since_tick = true;
                    // Write the answers, then read again.
                    continue;
                }
            }

            // 3. Nothing more to read or write now: flush.
            if self.unflushed > 0 {
                match Pin::new(&mut self.ws).poll_flush(cx) {
                    Poll::Ready(Ok(())) => self.unflushed = 0,
                    Poll::Ready(Err(_)) => return Poll::Ready(Step::End(End::Failed)),
                    Poll::Pending => {}
                }
            }

            // 4. The ping timer.
            if let Some(ticker) = &mut self.ticker
                && ticker.poll_tick(cx).is_ready()
            {
                // A client that sent nothing, not even a pong, for three intervals is gone.
                if self.read_since_tick {
                    self.silent_ticks = 0;
                } else {
                    self.silent_ticks += 1;
                }
                self.read_since_tick = false;
                if self.silent_ticks >= 3 {
                    tracing::debug!(
                        connection = session.id(),
                        "no traffic for three pings; closing"
                    );
                    return Poll::Ready(Step::End(End::Read));
                }
                // The write deadline: a socket that took nothing for two intervals while
                // frames waited.
                self.stuck_ticks = if blocked { self.stuck_ticks + 1 } else { 0 };
                if self.stuck_ticks >= 2 {
                    tracing::warn!(
                        connection = session.id(),
                        "closing a client that took nothing for two ping intervals while frames waited for it"
                    );
                    return Poll::Ready(Step::End(End::Failed));
                }
                match Pin::new(&mut self.ws).poll_ready(cx) {
                    Poll::Ready(Ok(())) => {
                        if Pin::new(&mut self.ws)
                            .start_send(Message::Ping(Bytes::new()))
                            .is_err()
                        {
                            return Poll::Ready(Step::End(End::Failed));
                        }
                        self.unflushed += 1;
                    }
                    Poll::Ready(Err(_)) => return Poll::Ready(Step::End(End::Failed)),
                    // A socket that takes nothing gets no ping; the close path handles it.
                    Poll::Pending => {}
                }
                continue;
            }

            // 5. Sleep until a frame is queued (or the socket, the timer or a close wakes us).
            match self.rx.poll_ready(cx) {
                Poll::Ready(true) if !blocked => continue,
                // Frames wait but the socket is full: its readiness wakes us.
                Poll::Ready(true) => {}
                // The connection's last handle is gone (it closed).
                Poll::Ready(false) => return Poll::Ready(Step::End(End::Read)),
                Poll::Pending => {}
            }
            if self.sent == self.outbox.len() && self.outbox.capacity() > OUTBOX_KEPT {
                // An idle connection keeps a small outbox buffer at most (a busy one reuses
                // it from wake-up to wake-up instead of allocating it each time).
                self.outbox = Outbox::new();
                self.sent = 0;
            }
            return Poll::Pending;
        }
    }

    /// Writes the outbox, then the queue, into the socket's buffer while it takes them,
    /// flushing every `MAX_BATCH` frames. `Ok(true)` when the socket stopped taking them.
    fn write(&mut self, cx: &mut Context<'_>, session: &Session) -> Result<bool, End> {
        // The inspector's tap: one relaxed load per batch for a connection nobody traces.
        let traced = session.traced();
        loop {
            let from_outbox = self.sent < self.outbox.len();
            if !from_outbox && !self.rx.has_frames() {
                if self.sent > 0 {
                    self.outbox.clear();
                    self.sent = 0;
                }
                return Ok(false);
            }
            if self.unflushed >= MAX_BATCH {
                match Pin::new(&mut self.ws).poll_flush(cx) {
                    Poll::Ready(Ok(())) => self.unflushed = 0,
                    Poll::Ready(Err(_)) => return Err(End::Failed),
                    Poll::Pending => return Ok(true),
                }
            }
            match Pin::new(&mut self.ws).poll_ready(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(_)) => return Err(End::Failed),
                Poll::Pending => return Ok(true),
            }
            let frame = if from_outbox {
                self.sent += 1;
                std::mem::take(&mut self.outbox[self.sent - 1])
            } else {
                match self.rx.try_recv() {
                    Some(frame) => frame,
                    None => continue,
                }
            };
            if traced {
                session.trace_out(&frame);
            }
            if Pin::new(&mut self.ws)
                .start_send(Message::Binary(frame))
                .is_err()
            {
                return Err(End::Failed);
            }
            self.unflushed += 1;
        }
    }
}

/// Handles one message read from the socket; `Some` when the pump must stop.
fn on_message(
    msg: Option<Result<Message, axum::Error>>,
    session: &mut Session,
    outbox: &mut Outbox,
    meter: Option<&Meter>,
) -> Option<Step> {
    match msg {
        Some(Ok(Message::Binary(frame))) => {
            if let Some(meter) = meter {
                meter.message_read();
            }
            if session.traced() {
                session.trace_in(&frame);
            }
            if let Some(init) = session.on_binary(frame, outbox) {
                return Some(Step::Init(init));
            }
        }
        Some(Ok(Message::Text(_))) => {
            if let Some(meter) = meter {
                meter.message_read();
            }
            if let Some(init) = session.on_text() {
                return Some(Step::Init(init));
            }
        }
        Some(Ok(Message::Ping(payload) | Message::Pong(payload))) => {
            if let Some(meter) = meter {
                meter.control_read(payload.len());
            }
        }
        Some(Ok(Message::Close(_))) | None => return Some(Step::End(End::Read)),
        Some(Err(e)) => {
            tracing::debug!(connection = session.id(), "socket error: {e}");
            if too_big(&e) {
                session.close(CLOSE_TOO_BIG, "message too big");
            }
            return Some(Step::End(End::Read));
        }
    }
    None
}

/// Whether the WebSocket layer refused a message for its size (larger than twice
/// `max_frame_size`, which must not be buffered at all).
fn too_big(e: &axum::Error) -> bool {
    use std::error::Error as _;
    matches!(
        e.source()
            .and_then(|inner| inner.downcast_ref::<tungstenite::Error>()),
        Some(tungstenite::Error::Capacity(
            tungstenite::error::CapacityError::MessageTooLong { .. }
        ))
    )
}

/// Ends a connection: sends the close frame the server asked for, or gives what is queued
/// (the last replies, a close frame) a moment to leave. The queue ends when the connection and
/// the tasks of its calls are gone.
async fn finish<W: Socket>(
    mut ws: W,
    mut rx: Receiver,
    mut outbox: Outbox,
    close: &CloseSignal,
    end: End,
) {
    match end {
        // Going away (a shutdown) or a session the server ended: the answers already queued
        // (the refresh call's refusal, say) leave first, for a second at most. Any other close
        // (a slow client, a message too big) wins over what waits.
        End::Close(why) if why.0 == GOING_AWAY || why.0 == SESSION_ENDED => {
            let flush = async {
                for frame in outbox.drain(..) {
                    if ws.feed(Message::Binary(frame)).await.is_err() {
                        return;
                    }
                }
                while let Some(frame) = rx.try_recv() {
                    if ws.feed(Message::Binary(frame)).await.is_err() {
                        return;
                    }
                }
                let _ = ws.flush().await;
            };
            let _ = tokio::time::timeout(Duration::from_secs(1), flush).await;
            send_close(&mut ws, why).await;
        }
        End::Close(why) => send_close(&mut ws, why).await,
        End::Failed => {}
        End::Read => {
            let drain = async {
                for frame in outbox.drain(..) {
                    if ws.feed(Message::Binary(frame)).await.is_err() {
                        return;
                    }
                }
                loop {
                    let next = tokio::select! {
                        biased;
                        why = close.wait() => {
                            send_close(&mut ws, why).await;
                            return;
                        }
                        frame = rx.recv() => frame,
                    };
                    match next {
                        Some(frame) => {
                            if ws.feed(Message::Binary(frame)).await.is_err() {
                                return;
                            }
                        }
                        None => {
                            let _ = ws.close().await;
                            return;
                        }
                    }
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
        }
    }
}

/// Why a connection's loop ended.
enum End {
    /// The server closes it with this code and reason.
    Close((u16, String)),
    /// The client closed it, went idle, or sent something unreadable.
    Read,
    /// A write failed.
    Failed,
}

async fn send_close<W: Socket>(ws: &mut W, (code, reason): (u16, String)) {
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    let _ =
        tokio::time::timeout(Duration::from_secs(1), ws.send(Message::Close(Some(frame)))).await;
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use rmpv::Value;

    use super::*;
    use crate::runtime::{Config, State, in_scope};

    #[crate::expose]
    async fn pump_test_echo(n: i64) -> i64 {
        n
    }

    /// What the in-memory socket saw and holds.
    #[derive(Default)]
    struct Wire {
        /// Messages the client sends; `None` is its end of the stream.
        incoming: VecDeque<Option<Result<Message, axum::Error>>>,
        read_waker: Option<Waker>,
        /// Fed but not flushed, then flushed.
        buffered: Vec<Message>,
        flushed: Vec<Message>,
        /// How many flushes wrote something.
        flushes: usize,
        /// How many more messages the socket takes before it blocks; `None`: unlimited.
        room: Option<usize>,
        write_waker: Option<Waker>,
        closed: bool,
    }

    #[derive(Clone, Default)]
    struct FakeSocket(Arc<Mutex<Wire>>);

    impl FakeSocket {
        fn wire(&self) -> std::sync::MutexGuard<'_, Wire> {
            self.0.lock().unwrap()
        }

        fn send(&self, msg: Message) {
            let mut w = self.wire();
            w.incoming.push_back(Some(Ok(msg)));
            if let Some(waker) = w.read_waker.take() {
                waker.wake();
            }
        }

        fn fail(&self, e: axum::Error) {
            let mut w = self.wire();
            w.incoming.push_back(Some(Err(e)));
            if let Some(waker) = w.read_waker.take() {
                waker.wake();
            }
        }

        fn set_room(&self, room: Option<usize>) {
            let mut w = self.wire();
            w.room = room;
            if let Some(waker) = w.write_waker.take() {
                waker.wake();
            }
        }

        /// The binary frames flushed to the client, decoded.
        fn replies(&self) -> Vec<Value> {
            self.wire()
                .flushed
                .iter()
                .filter_map(|m| match m {
                    Message::Binary(b) => Some(rmpv::decode::read_value(&mut &b[..]).unwrap()),
                    _ => None,
                })
                .collect()
        }
    }

    impl Stream for FakeSocket {
        type Item = Result<Message, axum::Error>;

        fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            let mut w = self.wire();
            match w.incoming.pop_front() {
                Some(next) => Poll::Ready(next),
                None => {
                    w.read_waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        }
    }

    impl Sink<Message> for FakeSocket {
        type Error = axum::Error;

        fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), axum::Error>> {
            let mut w = self.wire();
            if w.room == Some(0) {
                w.write_waker = Some(cx.waker().clone());
                return Poll::Pending;
            }
            Poll::Ready(Ok(()))
        }

        fn start_send(self: Pin<&mut Self>, msg: Message) -> Result<(), axum::Error> {
            let mut w = self.wire();
            if let Some(room) = &mut w.room {
                *room -= 1;
            }
            w.buffered.push(msg);
            Ok(())
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), axum::Error>> {
            let mut w = self.wire();
            if !w.buffered.is_empty() {
                w.flushes += 1;
                let batch = std::mem::take(&mut w.buffered);
                w.flushed.extend(batch);
            }
            Poll::Ready(Ok(()))
        }

        fn poll_close(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Result<(), axum::Error>> {
            let _ = self.as_mut().poll_flush(cx);
            self.wire().closed = true;
            Poll::Ready(Ok(()))
        }
    }

    fn call(id: i64, n: i64) -> Message {
        let frame = Value::Map(vec![
            ("type".into(), "rpc".into()),
            ("id".into(), id.into()),
            ("name".into(), "pump_test_echo".into()),
            ("args".into(), Value::Array(vec![n.into()])),
        ]);
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, &frame).unwrap();
        Message::Binary(Bytes::from(out))
    }

    fn result_of(reply: &Value) -> (i64, i64) {
        let get = |key: &str| {
            reply
                .as_map()
                .unwrap()
                .iter()
                .find(|(k, _)| k.as_str() == Some(key))
                .and_then(|(_, v)| v.as_i64())
                .unwrap()
        };
        (get("id"), get("result"))
    }

    /// Starts a connection of `state` over a fresh in-memory socket.
    fn serve(
        state: &Arc<State>,
        ping: Option<Duration>,
    ) -> (FakeSocket, tokio::task::JoinHandle<()>) {
        let socket = FakeSocket::default();
        let (session, rx) = Session::open(state, None, None);
        let task = tokio::spawn(in_scope(
            state.clone(),
            run(session, socket.clone(), rx, ping, None),
        ));
        (socket, task)
    }

    async fn settle() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn the_answers_to_one_read_leave_in_one_flush() {
        let state = State::for_tests(Config::default());
        let (socket, task) = serve(&state, None);
        {
            let mut w = socket.wire();
            for id in 1..=3 {
                w.incoming.push_back(Some(Ok(call(id, id * 10))));
            }
            if let Some(waker) = w.read_waker.take() {
                waker.wake();
            }
        }
        settle().await;
        let results: Vec<_> = socket.replies().iter().map(result_of).collect();
        assert_eq!(results, vec![(1, 10), (2, 20), (3, 30)]);
        assert_eq!(socket.wire().flushes, 1, "three answers, one write");
        socket.wire().incoming.push_back(None);
        socket.send(Message::Close(None));
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(state.hub.len(), 0, "the session ended");
    }

    #[tokio::test]
    async fn a_socket_that_takes_nothing_is_not_read_from_until_it_takes_again() {
        let state = State::for_tests(Config::default());
        let (socket, _task) = serve(&state, None);
        socket.send(call(1, 1));
        settle().await;
        assert_eq!(socket.replies().len(), 1);
        socket.set_room(Some(0));
        socket.send(call(2, 2));
        settle().await;
        // The answer to call 2 waits in the outbox; call 3 is not read while it does.
        socket.send(call(3, 3));
        settle().await;
        assert_eq!(
            socket.wire().incoming.len(),
            1,
            "nothing more is read from a blocked socket"
        );
        assert_eq!(socket.replies().len(), 1);
        socket.set_room(None);
        settle().await;
        let results: Vec<_> = socket.replies().iter().map(result_of).collect();
        assert_eq!(results, vec![(1, 1), (2, 2), (3, 3)]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_close_request_wins_over_a_write_that_never_finishes() {
        let config = Config {
            outbound_capacity: 1,
            ..Config::default()
        };
        let state = State::for_tests(config);
        let (socket, task) = serve(&state, None);
        socket.set_room(Some(0));
        settle().await;
        // One event waits for a socket that takes nothing; the next finds the queue full,
        // and the slow-client policy asks for a close.
        assert_eq!(state.hub.offer_all(&Bytes::from_static(b"\x80"), None), 1);
        settle().await;
        assert_eq!(state.hub.offer_all(&Bytes::from_static(b"\x80"), None), 0);
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(state.hub.len(), 0, "the session ended");
        let closes = state
            .outbound
            .counters
            .slow_client_closes
            .load(Ordering::Relaxed);
        assert_eq!(closes, 1);
        assert!(socket.replies().is_empty(), "the stuck event never got out");
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_client_is_pinged_then_closed_after_three_intervals() {
        let state = State::for_tests(Config::default());
        let every = Duration::from_secs(10);
        let (socket, task) = serve(&state, Some(every));
        tokio::time::timeout(Duration::from_secs(60), task)
            .await
            .unwrap()
            .unwrap();
        let w = socket.wire();
        let pings = w
            .flushed
            .iter()
            .filter(|m| matches!(m, Message::Ping(_)))
            .count();
        assert_eq!(pings, 2, "pinged at 10 s and 20 s, closed at 30 s");
        assert!(w.closed);
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_reads_nothing_is_dropped_at_the_write_deadline() {
        let state = State::for_tests(Config::default());
        let every = Duration::from_secs(10);
        let (socket, task) = serve(&state, Some(every));
        socket.send(call(1, 1));
        settle().await;
        socket.set_room(Some(0));
        // The answer to this call never leaves. Two intervals later (not the three that
        // would close an idle client) the connection is gone.
        socket.send(call(2, 2));
        tokio::time::sleep(every * 2 + Duration::from_millis(100)).await;
        settle().await;
        assert!(task.is_finished(), "closed at the second ping, not later");
        assert_eq!(state.hub.len(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_answers_pings_stays() {
        let state = State::for_tests(Config::default());
        let every = Duration::from_secs(10);
        let (socket, task) = serve(&state, Some(every));
        for _ in 0..6 {
            tokio::time::sleep(every).await;
            socket.send(Message::Pong(Bytes::new()));
        }
        assert!(
            !task.is_finished(),
            "a minute of pongs keeps the connection"
        );
        assert_eq!(state.hub.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_message_too_big_for_the_socket_closes_with_1009() {
        let state = State::for_tests(Config::default());
        let (socket, task) = serve(&state, None);
        socket.fail(axum::Error::new(tungstenite::Error::Capacity(
            tungstenite::error::CapacityError::MessageTooLong {
                size: 1 << 30,
                max_size: 1 << 24,
            },
        )));
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
        let w = socket.wire();
        let close = w.flushed.iter().find_map(|m| match m {
            Message::Close(Some(frame)) => Some(frame.code),
            _ => None,
        });
        assert_eq!(close, Some(CLOSE_TOO_BIG));
    }

    #[tokio::test(start_paused = true)]
    async fn other_socket_errors_end_the_connection_without_a_close_code() {
        let state = State::for_tests(Config::default());
        let (socket, task) = serve(&state, None);
        socket.fail(axum::Error::new(std::io::Error::other("connection reset")));
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
        let w = socket.wire();
        assert!(
            !w.flushed
                .iter()
                .any(|m| matches!(m, Message::Close(Some(_))))
        );
    }
}
