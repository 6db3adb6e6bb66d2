//! [`Server::revalidate`](crate::Server::revalidate)'s settings: how often, the hook, and
//! whether its task runs (the task is `ending.rs`'s).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::handler::BoxFuture;
use crate::identity::Identity;

/// The revalidation hook, type-erased: identities in, the ones whose sessions must end out.
pub(crate) type RevalidateFn = Arc<dyn Fn(Vec<Identity>) -> BoxFuture<Vec<Identity>> + Send + Sync>;

pub(crate) struct Revalidation {
    pub every: Duration,
    pub hook: RevalidateFn,
    started: AtomicBool,
}

impl std::fmt::Debug for Revalidation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Revalidation")
            .field("every", &self.every)
            .finish_non_exhaustive()
    }
}

impl Revalidation {
    pub fn new<F, Fut>(every: Duration, hook: F) -> Self
    where
        F: Fn(Vec<Identity>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<Identity>> + Send + 'static,
    {
        Revalidation {
            every: every.max(Duration::from_millis(10)),
            hook: Arc::new(move |ids| Box::pin(hook(ids))),
            started: AtomicBool::new(false),
        }
    }

    /// `true` the first time only: the caller starts the task.
    pub fn start(&self) -> bool {
        !self.started.swap(true, Ordering::AcqRel)
    }
}
