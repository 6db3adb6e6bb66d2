//! Which server `ephaptic::emit` means: the one whose connection task or call task is running
//! (a task-local), or else the one started most recently in this process.

use std::sync::{Arc, Mutex, Weak};

use super::state::State;

tokio::task_local! {
    /// The server whose handler is running, so `emit` inside a handler reaches that server's
    /// clients even when a process runs several servers.
    static CURRENT: Arc<State>;
}

/// The server `emit` uses outside handlers: the one started most recently.
static DEFAULT: Mutex<Weak<State>> = Mutex::new(Weak::new());

pub(crate) fn set_default(state: &Arc<State>) {
    *DEFAULT.lock().unwrap_or_else(|e| e.into_inner()) = Arc::downgrade(state);
}

/// Runs `fut` with `state` as the current server: a call's own task, a hook, or a whole
/// connection's task (whose frames run their handlers' first polls inline).
pub(crate) fn in_scope<F: Future>(state: Arc<State>, fut: F) -> impl Future<Output = F::Output> {
    CURRENT.scope(state, fut)
}

/// Runs `f` with `state` as the current server.
pub(crate) fn sync_in_scope<R>(state: Arc<State>, f: impl FnOnce() -> R) -> R {
    CURRENT.sync_scope(state, f)
}

/// The current server, if any runs.
pub(crate) fn current() -> Option<Arc<State>> {
    CURRENT
        .try_with(|s| s.clone())
        .ok()
        .or_else(|| DEFAULT.lock().unwrap_or_else(|e| e.into_inner()).upgrade())
}
