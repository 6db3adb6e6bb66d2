//! The parity fixture's functions and events (`shared/parity-fixture.md`): the one server every
//! ephaptic client and benchmark is tested against. They live in the library target so that
//! the TypeScript export test (`tests/schema.rs`) can link them; `src/main.rs` serves them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ephaptic::{Caller, Expiring, Identity, Value, event, expose};
use futures_util::stream::{self, Stream, StreamExt};

/// The loader accepts a string token or `{"token": "..."}`; the identity is that string.
/// Anything else is anonymous: nil, an empty string, another type (binary data too, although
/// it would decode as a string). A token `expiring:<user>:<ms>` grants `<user>` for `<ms>`
/// milliseconds (credentials that expire, refreshed in band: docs/AUTH.md).
#[ephaptic::identity_loader]
async fn load(auth: Option<Value>) -> Option<Expiring<String>> {
    let token = token(auth?)?;
    if let Some(rest) = token.strip_prefix("expiring:")
        && let Some((user, ms)) = rest.rsplit_once(':')
        && let Ok(ms) = ms.parse::<u64>()
    {
        return (!user.is_empty())
            .then(|| Expiring::after(user.to_owned(), Duration::from_millis(ms)));
    }
    Some(Expiring::never(token))
}

fn token(auth: Value) -> Option<String> {
    let token = match auth {
        Value::String(s) => s.into_str()?,
        Value::Map(entries) => entries.into_iter().find_map(|(k, v)| match (k, v) {
            (Value::String(k), Value::String(v)) if k.as_str() == Some("token") => v.into_str(),
            _ => None,
        })?,
        _ => return None,
    };
    (!token.is_empty()).then_some(token)
}

/// `a + b` does not fit a 64-bit integer.
#[derive(Debug)]
#[ephaptic::error(code = "OVERFLOW", message = "The sum does not fit a 64-bit integer.")]
pub struct Overflow;

/// Returns `a + b`; `OVERFLOW` when it does not fit (never a wrapped sum).
#[expose]
async fn add(a: i64, b: i64) -> Result<i64, Overflow> {
    a.checked_add(b).ok_or(Overflow)
}

/// Returns its argument unchanged, whatever its shape.
#[expose]
async fn echo(value: Value) -> Value {
    value
}

/// Ends every session of `user`, on every server (close code 4401 with `reason`); returns how
/// many of its connections this server closed.
#[expose]
async fn kick(user: String, reason: String) -> usize {
    ephaptic::disconnect(ephaptic::to(user), &reason).local
}

/// This connection's number on its server (to tell one connection from the next).
#[expose]
async fn connection_id(caller: Caller) -> u64 {
    caller.connection_id()
}

/// The caller's identity; nil when anonymous.
#[expose]
async fn whoami(caller: Caller) -> Option<Identity> {
    caller.identity().cloned()
}

#[expose]
async fn returns_null() {}

/// Tests keyword binding: `"<first>|<second>"`.
#[expose]
async fn named(first: String, second: String) -> String {
    format!("{first}|{second}")
}

#[derive(Debug)]
#[ephaptic::error(code = "INSUFFICIENT_FUNDS", message = "Not enough funds.")]
pub struct InsufficientFunds {
    pub available: u32,
}

/// Always fails with a typed error.
#[expose]
async fn boom() -> Result<(), InsufficientFunds> {
    Err(InsufficientFunds { available: 3 })
}

/// Fails with an undeclared error: clients must see `INTERNAL`, never its text.
#[expose]
async fn kaboom() -> ephaptic::Result<()> {
    Err(std::io::Error::other(
        "secret-detail: the database password is hunter2",
    ))?;
    Ok(())
}

/// Panics: clients see `INTERNAL`, and the connection lives on.
#[expose]
#[allow(clippy::unused_async)]
async fn panics() -> u32 {
    panic!("secret-detail: this handler panics on purpose")
}

/// Requires login.
#[expose(requires_login)]
async fn secret() -> &'static str {
    "s3cret"
}

/// Rate limited to 2 calls a minute per identity (per peer address when anonymous).
#[expose(rate_limit = "2/m")]
async fn limited() -> &'static str {
    "ok"
}

/// Streams `n, n-1, ..., 1`.
#[expose]
async fn countdown(n: u32) -> impl Stream<Item = u32> {
    stream::iter((1..=n).rev())
}

/// Streams falsy values: `0, nil, false, ""`.
#[expose]
async fn falsy_stream() -> impl Stream<Item = Value> {
    stream::iter([
        Value::from(0),
        Value::Nil,
        Value::from(false),
        Value::from(""),
    ])
}

#[derive(Debug)]
#[ephaptic::error(code = "STREAM_FAILED", message = "The stream failed.")]
pub struct StreamFailed {
    pub after: u32,
}

/// Streams `1`, then fails with `STREAM_FAILED`.
#[expose]
async fn badstream() -> impl Stream<Item = Result<u32, StreamFailed>> {
    stream::iter([Ok(1), Err(StreamFailed { after: 1 })])
}

/// Streams an increasing counter every `ms` milliseconds, forever.
#[expose]
async fn ticker(ms: u64) -> impl Stream<Item = u64> {
    let every = Duration::from_millis(ms.max(1));
    stream::unfold(0u64, move |n| async move {
        tokio::time::sleep(every).await;
        Some((n, n + 1))
    })
    .boxed()
}

/// Sleeps `ms` milliseconds, then returns `ms`.
#[expose]
async fn sleepy(ms: u64) -> u64 {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    ms
}

/// An item, for argument validation with nested paths and defaults.
#[ephaptic::model]
#[derive(Debug)]
pub struct Item {
    pub id: u64,
    pub name: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub when: Option<String>,
}

/// Returns the item it was given.
#[expose]
async fn make_item(item: Item) -> Item {
    item
}

/// Sent to the caller by `ping`.
#[event]
#[derive(Debug, Clone)]
pub struct Pong {
    pub ok: bool,
}

/// Sent by `notify` (level 1, to one user) and `shout` (level 2, to everyone).
#[event]
#[derive(Debug, Clone)]
pub struct Notice {
    pub message: String,
    pub level: u8,
}

/// Emits `Pong {ok: true}` to the caller only, then returns `"pong"`.
#[expose]
async fn ping(caller: Caller) -> &'static str {
    caller.emit(Pong { ok: true }).await;
    "pong"
}

/// Emits `Notice {message, level: 1}` to every connection of identity `user`; returns how many
/// connections it reached on this server.
#[expose]
async fn notify(user: String, message: String) -> usize {
    ephaptic::to(user)
        .emit(Notice { message, level: 1 })
        .await
        .local
}

/// Emits `Notice {message, level: 2}` to every connection.
#[expose]
async fn shout(message: String) -> usize {
    ephaptic::emit(Notice { message, level: 2 }).await.local
}

/// A todo item.
#[ephaptic::model]
#[derive(Debug, Clone)]
pub struct Todo {
    pub id: u64,
    pub title: String,
    pub done: bool,
}

static NEXT_TODO: AtomicU64 = AtomicU64::new(1);

/// Creates a todo and announces it on the `todoCreated` channel. Idempotent: a call re-sent
/// with its key (after a reconnect) creates one todo and announces it once.
#[expose(idempotent, broadcast = ["todoCreated"])]
async fn create_todo(title: String) -> Todo {
    Todo {
        id: NEXT_TODO.fetch_add(1, Ordering::Relaxed),
        title,
        done: false,
    }
}

/// Emits `n` (at most 10,000) `Notice {message: "<i>", level: 3}` events to every connection of
/// identity `user`, `i` counting from `from`; returns `n`. For the resume tests: events a
/// client missed while it was away.
#[expose]
async fn burst_to(user: String, from: u32, n: u32) -> u32 {
    let n = n.min(10_000);
    for i in from..from + n {
        ephaptic::to(user.as_str())
            .emit(Notice {
                message: i.to_string(),
                level: 3,
            })
            .await;
    }
    n
}

/// Joins the caller to group `room`; `true` when it was not a member yet.
#[expose]
async fn enter_room(caller: Caller, room: String) -> bool {
    caller.join_ready(&room).await
}

/// Takes the caller out of group `room`; `true` when it was a member.
#[expose]
async fn leave_room(caller: Caller, room: String) -> bool {
    caller.leave(&room)
}

/// Emits `Notice {message, level: 4}` to every member of group `room`; returns how many
/// connections it reached on this server.
#[expose]
async fn room_say(room: String, message: String) -> usize {
    ephaptic::group(room)
        .emit(Notice { message, level: 4 })
        .await
        .local
}

/// How a connection shows in a presence list (`presence_track`).
#[ephaptic::model]
#[derive(Debug, Clone, PartialEq)]
pub struct Online {
    pub name: String,
}

ephaptic::presence_meta!(Online);

/// Joins `group` (which also lets the caller watch its presence) and tracks the caller in it as
/// `name`; tracking again replaces the name.
#[expose]
async fn presence_track(caller: Caller, group: String, name: String) -> ephaptic::Result<bool> {
    caller.join(&group);
    caller.presence(&group).track(Online { name }).await?;
    Ok(true)
}

/// Stops tracking the caller in `group`; `false` when it was not tracked there.
#[expose]
async fn presence_untrack(caller: Caller, group: String) -> bool {
    caller.presence(&group).untrack().await
}

/// The members of `group`, as the server lists them (no authorisation: server code).
#[expose]
async fn presence_members(group: String) -> ephaptic::Result<ephaptic::PresenceList<Online>> {
    ephaptic::presence(&group).list().await
}
