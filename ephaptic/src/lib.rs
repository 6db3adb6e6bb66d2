//! # ephaptic
//!
//! Typed, real-time backends in Rust. Mark async functions with [`#[expose]`](expose), call
//! [`serve`], and every ephaptic client (TypeScript, Python, Kotlin) can call them over one
//! WebSocket, with typed arguments, typed errors and streams.
//!
//! ```no_run
//! use ephaptic::{expose, Caller};
//!
//! /// Adds two numbers. (Doc comments travel to the generated TypeScript.)
//! #[expose]
//! async fn add(a: i64, b: i64) -> i64 {
//!     a + b
//! }
//!
//! #[expose(name = "whoAmI")]
//! async fn who_am_i(caller: Caller) -> Option<String> {
//!     caller.identity().map(|id| id.to_string())
//! }
//!
//! #[tokio::main]
//! async fn main() -> std::io::Result<()> {
//!     ephaptic::serve("127.0.0.1:8000").await
//! }
//! ```
//!
//! From the TypeScript client that is `await client.add(1, 2)`; from Python,
//! `await client.add(1, 2)` or `await client.add(a=1, b=2)`.
//!
//! ## Functions
//!
//! `#[expose]` works on `async fn` and on plain `fn` (which runs on a blocking thread, so it
//! may block). Options:
//!
//! | option | effect |
//! |---|---|
//! | `name = "camelName"` | the wire name clients call (default: the Rust name) |
//! | `requires_login` | anonymous callers get `UNAUTHORIZED` |
//! | `rate_limit = "10/m"` | at most 10 calls a minute per caller (its identity, or its IP when anonymous); more get `RATELIMIT` with `data.retry_after` seconds. Units: `s`, `m`, `h`, `d`. A burst of 10, then one call every 6 s (GCRA). The server holds a few dozen bytes per caller, whatever the identity's size, until two periods after its last call (`Metrics::rate_limit_entries`); with Redis the count is shared (`docs/PROTOCOL.md` section 6) |
//! | `idempotent` | a call carrying an idempotency key (`@ephaptic/client` adds one, and re-sends the call after a reconnect) runs at most once per key and caller within the server's window; a repeat gets the first call's answer, waiting for it if it still runs (docs/PROTOCOL.md 5.12) |
//! | `broadcast = ["todoCreated"]` | announce the `Ok` value on these channels (see Events) |
//! | `broadcast_to = audience_fn` | who hears the channels: `fn(&Caller, &T) -> Audience` |
//!
//! **Parameters** are any `serde::Deserialize` type, bound from the call's positional `args`
//! and named `kwargs` in any mix. An `Option<T>` parameter may be left out. Wrong, missing,
//! extra or duplicated arguments answer `VALIDATION_ERROR` with one `{type, loc, msg, input}`
//! item per problem, `loc` being the path to the bad value (`["item", "tags", 1]`). A
//! parameter of type [`Caller`] is not an argument: it is the caller's context.
//!
//! **Return** any `Serialize` value (`()` is nil), a `Result<T, E>` where `E: Into<Error>`, or
//! a stream (`impl Stream<Item = T>`, or of `Result<T, E>` to fail mid-stream), possibly inside
//! a `Result`. A stream answers `{id, stream: true}`, then `{id, chunk}` per item, then
//! `{id, done: true}` (or an error frame).
//!
//! ```
//! use futures_util::stream::{self, Stream};
//!
//! #[ephaptic::expose]
//! async fn countdown(n: u32) -> impl Stream<Item = u32> {
//!     stream::iter((1..=n).rev())
//! }
//! ```
//!
//! ## Data types and TypeScript
//!
//! Give the structs and enums your functions take and return `#[ephaptic::model]`: it derives
//! serde's `Serialize`/`Deserialize` and ts-rs's `TS` (through ephaptic, so you need neither as a
//! dependency), and records which fields a client may leave out (`#[ephaptic(default = ..)]`,
//! serde `default`, `Option`). The
//! `ephaptic-ts` crate then writes the `schema.ts` your frontend imports, with arguments typed so
//! that those fields are optional and results typed with every field present. Your own
//! `#[serde(...)]` attributes apply as usual.
//!
//! ```
//! #[ephaptic::model]
//! #[serde(rename_all = "camelCase")]
//! pub struct NewTodo {
//!     pub title: String,
//!     #[serde(default)]
//!     pub is_urgent: bool,     // optional for callers: `{ title: "milk" }` is enough
//! }
//! ```
//!
//! Functions are called by their Rust name unless `name = "..."` says otherwise;
//! `ephaptic::`[`naming!`]`(CamelCase);` once in the build serves every other function camelCase
//! (`create_todo` as `createTodo`), and the TypeScript export reads the same line.
//!
//! ## Errors
//!
//! Return your own codes with [`Error::new`], or declare an error type once with
//! [`#[ephaptic::error]`](macro@error): its fields travel as the error's `data`.
//!
//! ```
//! #[ephaptic::error(code = "INSUFFICIENT_FUNDS", message = "Not enough funds.")]
//! pub struct InsufficientFunds {
//!     pub available: u64,
//! }
//!
//! #[ephaptic::expose]
//! async fn withdraw(amount: u64) -> Result<u64, InsufficientFunds> {
//!     let available = 3;
//!     if amount > available { return Err(InsufficientFunds { available }) }
//!     Ok(available - amount)
//! }
//! ```
//!
//! Anything else that fails (any `std::error::Error` through `?`, or a panic) answers
//! `INTERNAL` / `Internal server error.`: the detail is logged, never sent, unless
//! [`Server::debug`] is on. A panicking handler costs its own call only.
//!
//! ## Identity
//!
//! A client's first frame may be `init` with an `auth` value. The identity loader turns it into
//! the connection's [`Identity`] (a string, integer, bool or UUID), which
//! [`Caller::identity`] returns and `requires_login` checks:
//!
//! ```
//! #[derive(serde::Deserialize)]
//! struct Token { token: String }
//!
//! #[ephaptic::identity_loader]
//! async fn load(auth: Option<Token>) -> Option<String> {
//!     let token = auth?.token;
//!     token.strip_prefix("user-").map(str::to_owned)
//! }
//! ```
//!
//! or in code, with [`Server::identity_loader`]. A browser app with cookie sessions reads the
//! cookie from the WebSocket's upgrade request instead: give the loader a [`Handshake`]
//! parameter (beside `auth`, or alone). The loader runs once per connection, before its first
//! frame is handled, also when that frame is a call rather than `init` (then without `auth`):
//!
//! ```
//! use ephaptic::Handshake;
//!
//! #[ephaptic::identity_loader]
//! async fn load(token: Option<String>, handshake: Handshake) -> Option<String> {
//!     let session = token.or_else(|| handshake.cookie("session").map(str::to_owned))?;
//!     session.strip_prefix("user-").map(str::to_owned)
//! }
//! ```
//!
//! Which origins may open a connection matters as soon as cookies identify users (cross-site
//! WebSocket hijacking); that, token rotation, the identity size cap, what anonymous
//! connections can do and rate limits are in the guide, `docs/AUTH.md` in the repository.
//!
//! Sessions end when the server says so: [`disconnect`] closes a user's (or a group's)
//! connections on every server with close code 4401, which `@ephaptic/client` does not
//! reconnect after; a loader may return an [`Expiring`] identity, which the client refreshes on
//! the same connection before it runs out; [`Server::revalidate`] ends the sessions of
//! identities whose server-side session is gone (`docs/AUTH.md`, "Logging out and revoking").
//!
//! ## Events
//!
//! `#[event]` makes a struct (or an enum serde writes as a map) something clients listen for:
//! `client.on("Notice", data => ...)`. Its fields are the data; your `#[serde(...)]` attributes
//! apply. Send it to everyone with [`emit`](fn@emit), to every connection of some identities with
//! [`to`] (`to(7)`, `to([1, 2, 3])`, `to!(1, "alice")`), to a group with [`group`], or to the
//! caller with [`Caller::emit`]. Each returns a [`Sent`]: `local`, how many connections of this
//! server it reached (never those of the other servers, which get it after), and `published`,
//! whether it went on to the other servers. Each event is encoded once for all of them.
//!
//! ```
//! use ephaptic::{event, expose, Caller};
//!
//! // `default`: `impl Default` with the field defaults, for `..Default::default()` below.
//! #[event(default)]
//! #[serde(rename_all = "camelCase")]
//! pub struct Notice {
//!     pub message: String,
//!     #[ephaptic(default = 1)]
//!     pub level: u8,
//!     #[ephaptic(default)]
//!     pub is_urgent: bool,
//! }
//!
//! #[expose]
//! async fn notify(user: u64, message: String) -> usize {
//!     // The user's connections on this server; with Redis, `published` says it went on too.
//!     ephaptic::to(user).emit(Notice { message, ..Default::default() }).await.local
//! }
//!
//! #[expose]
//! async fn ping(caller: Caller) -> &'static str {
//!     // Queued before the result, so the client sees the event first.
//!     caller.emit(Notice { message: "pong".into(), is_urgent: true, ..Default::default() }).await;
//!     "pong"
//! }
//! ```
//!
//! A field with `#[ephaptic(default = ..)]` may be left out by clients that send the event's
//! type as an argument, is filled in with that value, and shows it in TypeScript
//! (`@default 1`); see [`event`](macro@event) for every option. An `emit` does nothing until
//! it is awaited, and the compiler warns when the `.await` is missing.
//!
//! `to` takes one identity or a collection: `to(7)`, `to("alice")`, `to([1, 2, 3])`,
//! `to(vec_of_ids)`, `to(caller.identity())` (nobody when anonymous); [`to!`](macro@to) takes
//! several as separate arguments, `to!(1, 2, 3)`. The integer `7` and the string `"7"` are
//! different users. Events one task emits reach each connection in the order emitted.
//!
//! **Channels** announce a data operation so frontends can refresh:
//! `#[expose(broadcast = ["todoCreated"])]` emits the function's `Ok` value on `todoCreated`
//! after it succeeds (nothing when it fails). `broadcast_to = f`, with
//! `fn f(caller: &Caller, value: &T) -> Audience`, picks who hears it, so a multi-tenant app
//! keeps each tenant's changes to that tenant:
//!
//! ```
//! use ephaptic::{expose, Audience, Caller};
//!
//! #[derive(serde::Serialize, serde::Deserialize)]
//! pub struct Note { pub tenant: String, pub text: String }
//!
//! fn tenant_of(_caller: &Caller, note: &Note) -> Audience {
//!     Audience::group(format!("tenant:{}", note.tenant))
//! }
//!
//! #[expose(broadcast = ["noteAdded"], broadcast_to = tenant_of)]
//! async fn add_note(tenant: String, text: String) -> Note {
//!     Note { tenant, text }
//! }
//!
//! #[expose]
//! async fn open_tenant(caller: Caller, tenant: String) -> bool {
//!     // Check that the caller belongs to the tenant first: a group is as private as its join.
//!     caller.join(&format!("tenant:{tenant}"))
//! }
//! ```
//!
//! **Slow clients**: each connection has a bounded outbound queue
//! ([`Server::outbound_capacity`], default 1024 frames). An event that finds it full closes
//! that connection with close code 1008 (the client reconnects and refetches, so it never
//! silently misses an event), or, with [`SlowClient::DropEvents`], drops the event for that
//! client. Either way no memory grows and no other client waits. [`metrics`](fn@metrics) reports queue
//! lengths and how often the policy fired.
//!
//! ## Serving
//!
//! [`serve`] binds an address and says on stderr (or through `tracing`, once you install a
//! subscriber) what it serves: `ephaptic: 10 functions and 3 events on
//! ws://127.0.0.1:8000/_ephaptic`, or that it found nothing to serve, and why. It runs until
//! ctrl-c or SIGTERM, then shuts down gracefully: calls in flight finish, clients are told to
//! reconnect. [`router`] gives an axum [`Router`](axum::Router) to merge into an existing app;
//! [`Server`] configures the path, allowed origins, limits and debug mode. By default only the
//! server's own pages (and pages on loopback hosts, such as a dev server) may open a WebSocket
//! from a browser; see [`Server::allowed_origins`] and the auth guide (`docs/AUTH.md`). A
//! server that trusts where a request comes from (a private network, loopback) lists its
//! names with [`Server::allowed_hosts`] against DNS rebinding.
//!
//! The start line also says how events leave the server (in this process, or through Redis at
//! a URL whose password is masked). Every call runs in a `tracing` span (DEBUG, target
//! `ephaptic::call`) parented on the client's W3C `traceparent` ([`Server::on_trace_parent`]);
//! [`Server::metrics_endpoint`] serves Prometheus metrics and [`Server::inspector`] a live page,
//! both off by default and for loopback peers (`docs/OBSERVABILITY.md`).
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! let app = axum::Router::new()
//!     .route("/health", axum::routing::get(|| async { "ok" }))
//!     .merge(ephaptic::router());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8000").await?;
//! axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>()).await
//! # }
//! ```
//!
//! ## Sessions: nothing lost across a reconnect
//!
//! Every event sent to an identity, to everyone or to a group has a place in its stream and is
//! kept for a while ([`Server::retention`]: by default 256 events per identity, 1024 for
//! broadcasts and each group, for 300 s). A client that reconnects (a closed laptop lid, a
//! network switch, a server that drained for a deploy) asks to resume, and gets what it missed,
//! once and in order, before new events; or is told, per stream, that it must refetch (the
//! history no longer reaches back, or expired). The TypeScript client does it by itself and
//! invalidates the TanStack queries fed by a stream it could not recover. Old clients see only
//! three more keys in event frames, which they ignore. An event that is only a signal can say
//! how much of it to keep:
//!
//! ```
//! /// "The list changed": a client that missed several needs only the last.
//! #[ephaptic::event(recover = "latest")]
//! pub struct TodosChanged { pub version: u64 }
//!
//! /// Never replayed: stale the moment it is sent.
//! #[ephaptic::event(recover = "none")]
//! pub struct Typing { pub user: String }
//! ```
//!
//! Sessions are on by default ([`Server::resume`] turns them off); with Redis the history is in
//! Redis, so a client resumes on any server. The wire is in `docs/PROTOCOL.md`, section 5.6.
//!
//! ## Many servers
//!
//! With the `redis` feature, servers on one Redis (or Valkey) share their events:
//! `Server::new().redis("redis://127.0.0.1:6379")`, or the `EPHAPTIC_REDIS_URL` variable.
//! `to(user)` then reaches that user's connections on every server, `emit` and channels every
//! listener of every server, and rate limits are counted across all of them. Each connection
//! still gets each event once, and every listener of a stream gets its events in the same
//! order; an event sent while Redis is away reaches only this server's listeners (the others
//! are dropped and counted in [`metrics`](fn@metrics), and clients that speak sessions are
//! told to refetch once Redis is back). Any
//! server can take any connection, so no sticky sessions are needed. The guide is
//! `docs/SCALING.md` in the repository; `Server::redis_compat` interoperates with Python
//! ephaptic servers on the same Redis.
//!
//! ## Presence
//!
//! Who is in a group, with a typed meta per connection: a connection tracks itself with
//! [`Caller::presence`]`(group).track(meta)`, server code lists or counts with
//! [`presence`]`(group)`, and clients watch (`client.presence(group)` in TypeScript: a snapshot,
//! then batched diffs). Members are identities, so a user's tabs are one member, joining with the
//! first and leaving with the last; entries go when their connection closes. In memory on one
//! server; shared through Redis with the `redis` feature, where a crashed server's members expire
//! (`Server::presence_ttl`). [`presence_meta!`] types it in `schema.ts`;
//! [`Server::presence_authorize`] says who may watch.
//!
//! ```
//! # use ephaptic::Caller;
//! #[ephaptic::model]
//! pub struct Online { pub name: String }
//! ephaptic::presence_meta!(Online);
//!
//! #[ephaptic::expose]
//! async fn enter(caller: Caller, room: String, name: String) -> ephaptic::Result<u64> {
//!     let group = format!("room:{room}");
//!     caller.join(&group);
//!     caller.presence(&group).track(Online { name }).await?;
//!     Ok(ephaptic::presence(&group).count().await?.users)
//! }
//! ```
//!
//! ## Registration
//!
//! Exposed functions register themselves at link time (via `inventory`). The server logs how
//! many it serves at start, and two functions with one wire name stop it with both locations.
//! Functions in a crate that nothing else references may be dropped by the linker: reference
//! it (`use my_handlers as _;`), or register functions explicitly with [`Server::register`].
//!
//! ## Coming from Python ephaptic
//!
//! The wire is the same (old clients and the Python client work unchanged), and most names are
//! too; a few things differ on purpose.
//!
//! | Python ephaptic | ephaptic for Rust |
//! |---|---|
//! | `@ephaptic.expose` on an `async def` | `#[ephaptic::expose]` on an `async fn` |
//! | `await ephaptic.emit(ev)` inside a call: **the caller only** | `caller.emit(ev)` (take a [`Caller`] parameter); [`emit`](fn@emit) is **everyone** |
//! | `ephaptic.emit(ev)` outside a call: an error | [`emit`](fn@emit) works anywhere: every connection |
//! | `to(1, 2, 3).emit(ev)` | [`to!`](macro@to)`(1, 2, 3).emit(ev).await`, or `to([1, 2, 3])` |
//! | `class E(BaseModel): code: int = 1` | `#[ephaptic::event] struct E { #[ephaptic(default = 1)] code: i64 }` (also the `Default` impl and `@default 1` in TypeScript) |
//! | `@ephaptic.identity_loader` | `#[ephaptic::identity_loader]` (or [`Server::identity_loader`]) |
//! | `ephaptic generate ... --watch` | the exporter in `ephaptic-ts` (see its docs) |
//! | `ephaptic.to(...)` across workers via Redis | `Server::redis(url)` (feature `redis`), `redis_compat` to share a Redis with Python servers |
//! | pydantic `ValidationError` | the same `VALIDATION_ERROR` shape, from serde |
//!
//! A literal port of a handler that `emit`s to the calling user would broadcast in Rust: write
//! `caller.emit(..)` there.
//!
//! ## The wire
//!
//! One binary WebSocket frame per MessagePack map; see `docs/PROTOCOL.md` in the repository.
//! Cancelling a call is `{"type": "cancel", "id": <id>}`: the call's task is dropped and nothing
//! more is answered for it. Closing the connection stops all of its calls and streams.

// The crate's own unit tests use its macros, whose code names `::ephaptic`.
#[cfg(test)]
extern crate self as ephaptic;

// Layers, bottom to top; each imports only from the layers below it (ARCHITECTURE.md).
mod wire;

mod error;
mod handshake;
mod identity;
pub mod schema;

pub mod export;

mod session;

mod handler;

mod registry;

mod runtime;

mod transport;

#[cfg(feature = "redis")]
mod backplane;

mod server;
mod settings;

#[doc(hidden)]
#[path = "bench.rs"]
pub mod __bench;
#[doc(hidden)]
#[path = "fuzz/mod.rs"]
pub mod __fuzz;
#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

pub use error::{Error, Result, ServiceError};
pub use handler::defs::{ErrorDef, EventDef, Exposed, FunctionDef, NamingDef, Site};
pub use handler::{
    Audience, Caller, Emit, Event, Expiring, IdentityLoader, IntoIdentity, IntoTargets, Issue,
    LoaderOutput, Loc, Recover, Sent, group, to,
};
pub use handshake::Handshake;
pub use identity::Identity;
pub use registry::{Introspection, Naming, RegistryError};
pub use runtime::history::Retention;
pub use runtime::{
    CallerPresence, Disconnected, Metrics, Presence, PresenceConn, PresenceCount, PresenceDiff,
    PresenceLeave, PresenceList, PresenceMember, TraceParent, disconnect, emit, metrics, presence,
    prometheus_text,
};
pub use schema::Model;
pub use server::Server;
pub use session::SlowClient;
pub use session::StreamKind;
pub use settings::{
    ConnectionSettings, IdempotencySettings, LimitSettings, PresenceSettings, SessionSettings,
};
#[doc(hidden)]
pub use ts_rs;
/// Derives the TypeScript description of a type (ts-rs). `#[ephaptic::model]`, `#[event]` and
/// `#[error]` derive it for you; deriving it by hand needs `#[ts(crate = "ephaptic::ts_rs")]`.
pub use ts_rs::TS;

/// A dynamic MessagePack value, for parameters and results of any shape (maps, lists, nil,
/// booleans, numbers, strings, bytes).
pub use rmpv::Value;

/// Exposes a function to ephaptic clients, who call it by name over the WebSocket.
///
/// Goes on an `async fn` or a plain `fn` (run on a blocking thread). Parameters are any
/// `Deserialize` type, bound from positional `args` and named `kwargs`; an `Option` may be left
/// out; a [`Caller`] parameter (by value) is the caller's context, not an argument. It returns
/// any `Serialize` value, a `Result<T, E>` with `E: Into<Error>`, or a stream. Options:
///
/// | option | effect |
/// |---|---|
/// | `name = "camelName"` | the wire name clients call (default: the Rust name, or [`Server::rename_all`]) |
/// | `requires_login` | anonymous callers get `UNAUTHORIZED` |
/// | `rate_limit = "10/m"` | calls per caller (identity, or IP when anonymous) per `s`, `m`, `h` or `d`; more get `RATELIMIT` |
/// | `idempotent` | calls with an idempotency key run once per key and caller within a window; repeats get the first answer (docs/PROTOCOL.md 5.12) |
/// | `broadcast = ["todoCreated"]` | after it succeeds, announce the `Ok` value on these channels (once per key, for an `idempotent` function) |
/// | `broadcast_to = audience_fn` | who hears the channels: `fn(&Caller, &T) -> Audience` (default: everyone) |
///
/// ```
/// use ephaptic::{expose, Audience, Caller};
///
/// #[expose]
/// async fn add(a: i64, b: i64) -> i64 {
///     a + b
/// }
///
/// #[expose(name = "whoAmI", requires_login)]
/// async fn who_am_i(caller: Caller) -> String {
///     caller.identity().map(|id| id.to_string()).unwrap_or_default()
/// }
///
/// #[expose(rate_limit = "5/s")]
/// fn hash(text: String) -> u64 {
///     text.bytes().map(u64::from).sum()
/// }
///
/// #[ephaptic::model]
/// pub struct Todo { pub id: u64, pub owner: String }
///
/// fn owner_of(_caller: &Caller, todo: &Todo) -> Audience {
///     ephaptic::to(todo.owner.as_str())
/// }
///
/// // A client that lost its connection mid-call re-sends it: it still creates one todo.
/// #[expose(idempotent, broadcast = ["todoCreated"], broadcast_to = owner_of)]
/// async fn create_todo(owner: String) -> ephaptic::Result<Todo> {
///     Ok(Todo { id: 1, owner })
/// }
/// ```
pub use ephaptic_macros::expose;

/// Makes a struct (or an enum serde writes as a map) an event clients listen for:
/// `client.on("Notice", data => ...)`. Derives `Serialize`, `Deserialize` and `TS` for it (skip
/// those you derive yourself); your `#[serde(..)]` attributes apply. Send it with
/// [`emit`](fn@emit), [`to`], [`group`] or [`Caller::emit`]. Options:
///
/// | option | effect |
/// |---|---|
/// | `name = "noticeSent"` | the event name clients listen for (default: the type's name) |
/// | `default` | write `impl Default` even when some fields have no `#[ephaptic(default)]` (those take their type's `Default::default()`) |
/// | `recover = "stream"` | (the default) kept in its stream's history and replayed to a client that reconnects having missed it |
/// | `recover = "latest"` | kept, but a replay sends only the newest of this event (for "the list changed" signals) |
/// | `recover = "none"` | never kept nor replayed, sent without a position (typing indicators, progress ticks) |
///
/// **Field defaults** live in one place: `#[ephaptic(default = <expression>)]` on a field (any
/// expression: `= 1`, `= "text"` for a `String`, `= Vec::new()`), or a bare
/// `#[ephaptic(default)]` for the field type's `Default::default()`. The field may then be left
/// out by a client (it is optional in the argument's TypeScript shape), is filled in on the
/// wire with that value, and shows it in the TypeScript docs (`@default 1`). When every field
/// has one (or with the `default` option), the type gets an `impl Default` with the same
/// values, so `..Default::default()` agrees with the wire; do not also derive `Default`.
///
/// ```
/// #[ephaptic::event]
/// #[serde(rename_all = "camelCase")]
/// pub struct SomethingHappened {
///     #[ephaptic(default = 1)]
///     pub code: i64,
///     #[ephaptic(default = "nothing to report")]
///     pub message: String,
///     #[ephaptic(default)]
///     pub is_error: bool,
/// }
///
/// #[ephaptic::event(name = "todoSaved", default)]
/// pub struct Saved {
///     pub id: u64,
///     #[ephaptic(default = 3)]
///     pub retries: u8,
/// }
///
/// let e = SomethingHappened::default();
/// assert_eq!((e.code, e.message.as_str(), e.is_error), (1, "nothing to report", false));
/// let s = Saved { id: 7, ..Default::default() };
/// assert_eq!(s.retries, 3);
/// ```
pub use ephaptic_macros::event;

/// Makes a data type usable in exposed functions and exported to TypeScript: derives serde's
/// `Serialize`/`Deserialize` and ts-rs's `TS` (through ephaptic: no dependency of your own) and
/// records which fields clients may leave out (serde `default`, `Option`, and
/// `#[ephaptic(default = ..)]`), so arguments get an input type where those are optional.
///
/// | option | effect |
/// |---|---|
/// | `default` | write `impl Default` even when some fields have no `#[ephaptic(default)]` |
///
/// Fields take `#[ephaptic(default = <expression>)]` or `#[ephaptic(default)]` as on
/// [`event`](macro@event): the wire default, `impl Default` when every field has one, and
/// `@default` in the TypeScript docs.
///
/// ```
/// #[ephaptic::model]
/// #[serde(rename_all = "camelCase")]
/// pub struct NewTodo {
///     pub title: String,
///     #[serde(default)]
///     pub is_urgent: bool,
/// }
///
/// #[ephaptic::model]
/// pub struct Settings {
///     #[ephaptic(default = 30)]
///     pub timeout_secs: u32,
///     #[ephaptic(default = "dark")]
///     pub theme: String,
/// }
///
/// #[ephaptic::model(default)]
/// pub struct Page<T> {
///     pub items: Vec<T>,
///     #[ephaptic(default = 20)]
///     pub limit: u32,
/// }
///
/// assert_eq!(Settings::default().timeout_secs, 30);
/// assert_eq!(Page::<NewTodo>::default().limit, 20);
/// ```
pub use ephaptic_macros::model;

/// Declares an application error type with a fixed code: returned from an exposed function
/// (`Result<T, ThisType>`, or `?` into [`Error`]), it answers with that code, the message, and
/// its fields as `data`, typed in TypeScript. Options:
///
/// | option | effect |
/// |---|---|
/// | `code = "INSUFFICIENT_FUNDS"` | the error code clients match on (required; not one the runtime uses, such as `VALIDATION_ERROR`) |
/// | `message = "Need {needed}, have {available}."` | the human message; `{field}` fills in a field (default: `An error occurred.`) |
///
/// ```
/// #[ephaptic::error(code = "INSUFFICIENT_FUNDS", message = "Need {needed}, have {available}.")]
/// pub struct InsufficientFunds {
///     pub available: u64,
///     pub needed: u64,
/// }
///
/// #[ephaptic::error(code = "GONE")]
/// pub struct Gone;
///
/// #[ephaptic::expose]
/// async fn withdraw(amount: u64) -> Result<u64, InsufficientFunds> {
///     Err(InsufficientFunds { available: 3, needed: amount })
/// }
///
/// let e: ephaptic::Error = Gone.into();
/// assert_eq!(e.code(), "GONE");
/// ```
pub use ephaptic_macros::error;

/// Declares the identity loader: the function that turns a client's `init.auth` (and, if it
/// asks, the upgrade request) into the connection's [`Identity`]. It takes no options, and
/// runs once per connection.
///
/// Its parameters are `auth: A` (any `Deserialize` type; an `Option` also accepts clients that
/// send none), a [`Handshake`] (by value: headers, cookies, peer address), or both. It returns
/// `Option<I>` or `Result<Option<I>, E>`, where `I` is an [`IntoIdentity`]: a string, an
/// integer, a `bool`, a `Uuid` or an [`Identity`]; `None` is anonymous, and an `Err` is logged
/// and the connection stays anonymous. The same in code: [`Server::identity_loader`].
///
/// ```
/// use ephaptic::Handshake;
///
/// #[ephaptic::identity_loader]
/// async fn load(token: Option<String>, handshake: Handshake) -> Option<u64> {
///     let token = token.or_else(|| handshake.cookie("session").map(str::to_owned))?;
///     token.strip_prefix("user-")?.parse().ok()
/// }
/// ```
pub use ephaptic_macros::identity_loader;

/// Declares how functions without an explicit `name = "..."` are named on the wire, once for
/// the whole build: `ephaptic::naming!(CamelCase);` anywhere in a linked crate (next to the
/// functions is best) serves `create_todo` as `createTodo`.
///
/// [`serve`], every [`Server`] that does not set [`Server::rename_all`] itself, and the
/// TypeScript export (`cargo ephaptic export`, `ephaptic_ts::check`) all read it, so the name a
/// client calls and the name `schema.ts` types cannot drift apart. Precedence, per server:
/// [`Server::rename_all`], then this declaration, then [`Naming::AsWritten`]. Declarations
/// of different rules stop the server from starting, naming each.
///
/// The rules are the variants of [`Naming`]: `AsWritten`, `CamelCase`.
///
/// **Fields keep their names.** The fields of events and models are named by serde, in each
/// struct's own derive, which runs when that struct is compiled and cannot see a declaration
/// made elsewhere in the build (this one is read at run time). So write
/// `#[serde(rename_all = "camelCase")]` on each struct whose fields should be camelCase; the
/// TypeScript export says which structs still have snake_case fields under
/// `naming!(CamelCase)`. The rule stays out of the fields on purpose too: a field's name is
/// part of every client's contract (the Python client reads `is_error`), and one line per
/// struct keeps that visible where the struct is.
///
/// ```standalone_crate
/// ephaptic::naming!(CamelCase);
///
/// #[ephaptic::expose]
/// async fn create_todo(title: String) -> String {
///     title
/// }
///
/// let intro = ephaptic::introspect().unwrap();
/// assert_eq!(intro.functions[0].name, "createTodo");
/// ```
#[macro_export]
macro_rules! naming {
    ($rule:ident) => {
        const _: () = {
            static NAMING: $crate::__private::NamingDef = $crate::__private::NamingDef {
                naming: $crate::Naming::$rule,
                site: $crate::__private::Site {
                    rust_name: "naming!",
                    module: ::core::module_path!(),
                    file: ::core::file!(),
                    line: ::core::line!(),
                },
            };
            $crate::__private::inventory::submit! {
                $crate::__private::Registration::Naming(&NAMING)
            }
        };
    };
}

/// Serves every exposed function at `ws://<addr>/_ephaptic` with the default settings, until
/// ctrl-c or SIGTERM ends it gracefully (see [`Server::serve`]). Same as
/// `Server::new().serve(addr)`.
pub async fn serve(addr: impl tokio::net::ToSocketAddrs) -> std::io::Result<()> {
    Server::new().serve(addr).await
}

/// The WebSocket endpoint (`/_ephaptic`) as an axum router to merge into your app.
/// Same as `Server::new().router()`.
///
/// # Panics
/// When two exposed functions share a wire name; the message names both.
pub fn router() -> axum::Router {
    Server::new().router()
}

/// Drains the current server's WebSocket connections, as [`Server::serve`] does at a graceful
/// shutdown: new calls are answered `SHUTTING_DOWN`, calls in flight get `timeout` to finish,
/// then every connection is closed with 1001. For an app that serves [`router`] itself: call it
/// after `axum::serve(..).with_graceful_shutdown(..)` returns (axum does not wait for upgraded
/// connections). Does nothing when no server runs.
///
/// ```no_run
/// # async fn run(listener: tokio::net::TcpListener) -> std::io::Result<()> {
/// let app = axum::Router::new().merge(ephaptic::router());
/// axum::serve(listener, app)
///     .with_graceful_shutdown(async {
///         let _ = tokio::signal::ctrl_c().await;
///     })
///     .await?;
/// ephaptic::shutdown(std::time::Duration::from_secs(10)).await;
/// # Ok(())
/// # }
/// ```
pub async fn shutdown(timeout: std::time::Duration) {
    if let Some(state) = runtime::scope::current() {
        runtime::drain::drain(&state, timeout).await;
    }
}

/// What this build declares (link-time registrations), or the conflicts that would stop a
/// server from starting.
pub fn introspect() -> Result<Introspection, RegistryError> {
    Server::new().introspect()
}
