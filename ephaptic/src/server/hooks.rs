//! The application's code the server runs beside calls: connection hooks, the revalidation of
//! sessions, presence authorisation and a call's trace parent.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::Server;
use crate::runtime::Hook;

impl Server {
    /// Who may watch, list or count a group's presence from a client
    /// (`client.presence(group)`): `hook(caller, group)` answers; a refused client gets the
    /// error `FORBIDDEN`. Without a hook, a connection may see the presence of the groups it
    /// joined ([`Caller::join`](crate::Caller::join)) or tracks itself in.
    ///
    /// ```
    /// let server = ephaptic::Server::new().presence_authorize(|caller, group| async move {
    ///     // Rooms are public to anyone logged in; documents to their members.
    ///     caller.is_authenticated() && (group.starts_with("room:") || caller.groups().contains(&group))
    /// });
    /// ```
    pub fn presence_authorize<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(crate::Caller, String) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = bool> + Send + 'static,
    {
        self.presence.authorize =
            Some(Arc::new(move |caller, group| Box::pin(hook(caller, group))));
        self
    }

    /// Runs `hook` for each new connection once its identity is settled (after its first
    /// frame: `init` and the identity loader, or a first call), in a task of its own and
    /// concurrently with the connection's calls. For presence, welcome events, joining groups:
    ///
    /// ```
    /// # #[ephaptic::event] pub struct Online { count: usize }
    /// let server = ephaptic::Server::new()
    ///     .on_connect(|caller: ephaptic::Caller| async move {
    ///         if let Some(id) = caller.identity() {
    ///             caller.join(&format!("user:{id}"));
    ///         }
    ///         let count = ephaptic::metrics().map_or(0, |m| m.connections);
    ///         ephaptic::emit(Online { count }).await;
    ///     })
    ///     .on_disconnect(|_caller| async move {
    ///         // the connection is already gone from the counts and groups here
    ///         let count = ephaptic::metrics().map_or(0, |m| m.connections);
    ///         ephaptic::emit(Online { count }).await;
    ///     });
    /// ```
    pub fn on_connect<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(crate::Caller) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.on_connect = Some(erase_hook(hook));
        self
    }

    /// Runs `hook` when a connection whose [`on_connect`](Self::on_connect) stage was reached
    /// closes, after it has left the server's counts, identities and groups (so
    /// `ephaptic::emit` no longer reaches it). Runs in a task of its own.
    pub fn on_disconnect<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(crate::Caller) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.on_disconnect = Some(erase_hook(hook));
        self
    }

    /// Runs `hook` every `every` with the identities connected to this server (in batches of
    /// at most 1000, each identity once however many connections it has), and ends the
    /// sessions of the identities it returns: their connections here are closed with close
    /// code 4401 and the reason `session revoked` (docs/PROTOCOL.md 5.11). For cookie sessions,
    /// whose server-side record can be deleted while a WebSocket stays open:
    ///
    /// ```
    /// use std::time::Duration;
    /// use ephaptic::Identity;
    ///
    /// # async fn sessions_gone(ids: &[Identity]) -> Vec<Identity> { Vec::new() }
    /// let server = ephaptic::Server::new().revalidate(Duration::from_secs(60), |ids: Vec<Identity>| async move {
    ///     // One query for the whole batch: which of these have no live session any more?
    ///     sessions_gone(&ids).await
    /// });
    /// ```
    ///
    /// Each server revalidates its own connections; to end a session on every server at once,
    /// call [`ephaptic::disconnect`](crate::disconnect) instead. A hook that panics keeps its
    /// batch's sessions until the next run.
    pub fn revalidate<F, Fut>(mut self, every: Duration, hook: F) -> Self
    where
        F: Fn(Vec<crate::Identity>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<crate::Identity>> + Send + 'static,
    {
        self.revalidation = Some(crate::runtime::Revalidation::new(every, hook));
        self
    }

    /// Runs `hook` with each call's span and the W3C trace context its client sent
    /// (`traceparent` in the `rpc` frame, docs/PROTOCOL.md 5.13), before the call runs. Every
    /// call already runs in a DEBUG span named `rpc` (target `ephaptic::call`) with the fields
    /// `rpc.system`, `rpc.method`, `rpc.code`, `ephaptic.connection`, `trace_id` and
    /// `parent_id`; this hook is where an application using `tracing-opentelemetry` makes the
    /// client's span the parent (the core crate depends on no OpenTelemetry crate):
    ///
    /// ```ignore
    /// use opentelemetry::propagation::TextMapPropagator;
    /// use opentelemetry_sdk::propagation::TraceContextPropagator;
    /// use tracing_opentelemetry::OpenTelemetrySpanExt;
    ///
    /// let server = ephaptic::Server::new().on_trace_parent(|span, parent| {
    ///     let carrier = std::collections::HashMap::from([("traceparent".to_owned(), parent.to_string())]);
    ///     let _ = span.set_parent(TraceContextPropagator::new().extract(&carrier));
    /// });
    /// ```
    ///
    /// It runs only for the calls whose span a subscriber enabled, and only when the client
    /// sent a valid `traceparent`.
    pub fn on_trace_parent<F>(mut self, hook: F) -> Self
    where
        F: Fn(&tracing::Span, &crate::TraceParent) + Send + Sync + 'static,
    {
        self.trace_parent = Some(Arc::new(hook));
        self
    }
}

/// A connection hook, type-erased.
fn erase_hook<F, Fut>(hook: F) -> Hook
where
    F: Fn(crate::Caller) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    Arc::new(move |caller| Box::pin(hook(caller)))
}
