//! What `benches/call.rs` measures: one call through the real frame path, with no socket.
//! The fuzz harness (`__fuzz`) drives the same path. Not a public API: it changes without notice.

use std::sync::Arc;

use bytes::Bytes;

use crate::runtime::{State, inbound, sync_in_scope};
use crate::session::{Connection, Outbox, Receiver, outbound};

/// A server's state and one connection of it, without a socket.
#[derive(Debug)]
pub struct Bench {
    state: Arc<State>,
    conn: Arc<Connection>,
    out: Outbox,
    rx: Receiver,
    rt: tokio::runtime::Runtime,
}

impl Bench {
    /// # Panics
    /// When the server's registry has conflicts.
    pub fn new(server: crate::Server) -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread runtime");
        let state = server.build(None).expect("a valid registry");
        let (tx, rx) = outbound::channel(state.outbound.clone());
        let conn = Connection::new(state.next_connection_id(), None, None, tx);
        Bench {
            state,
            conn,
            out: Outbox::new(),
            rx,
            rt,
        }
    }

    /// Handles one client frame as a connection's task does (parse, function lookup,
    /// argument binding, the handler's first poll, encoding) and returns the first frame
    /// it answered at once, if any.
    pub fn call(&mut self, frame: Bytes) -> Option<Bytes> {
        let _runtime = self.rt.enter();
        self.out.clear();
        let _ = sync_in_scope(self.state.clone(), || {
            inbound::on_frame(&self.state, &self.conn, frame, false, &mut self.out)
        });
        while self.rx.try_recv().is_some() {}
        self.out.pop()
    }

    /// Handles one client frame like [`call`](Self::call), as the connection's first frame when
    /// `first`, and returns every frame it caused: those answered at once, then those queued.
    pub fn every_answer(&mut self, frame: Bytes, first: bool) -> Vec<Bytes> {
        let _runtime = self.rt.enter();
        self.out.clear();
        let _ = sync_in_scope(self.state.clone(), || {
            inbound::on_frame(&self.state, &self.conn, frame, first, &mut self.out)
        });
        let mut answers = std::mem::take(&mut self.out);
        while let Some(queued) = self.rx.try_recv() {
            answers.push(queued);
        }
        answers
    }

    /// The server's largest accepted frame.
    pub fn max_frame_size(&self) -> usize {
        self.state.config.max_frame_size
    }
}
