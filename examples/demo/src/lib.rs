//! # The ephaptic demo: a live todo list
//!
//! A small app that shows, in a browser, what ephaptic does:
//!
//! - **Plain Rust functions become typed calls.** `list_todos`, `create_todo`, `toggle_todo`,
//!   `hello` and `clock` below are ordinary `async fn`s marked `#[ephaptic::expose]`; the page
//!   calls them as `client.listTodos()`, `client.createTodo(title)`, ... with the types of
//!   `frontend/schema.ts`, which `tests/schema.rs` generates from this file.
//! - **Identity.** The identity loader (`load`) takes the display name the page sends as `auth`
//!   and makes it the connection's identity; `create_todo` and `toggle_todo` refuse anonymous
//!   callers (`requires_login`), and `create_todo` stamps the todo with the caller's name.
//! - **Typed errors.** A bad title answers `INVALID_TITLE` with typed data ([`InvalidTitle`]);
//!   the page narrows it with `client.isError(e, "INVALID_TITLE")` and shows its message.
//! - **Live updates.** `broadcast = ["todoCreated"]` / `["todoUpdated"]` announce every new or
//!   toggled todo to every open page, which updates without reloading; the connect and
//!   disconnect hooks (see [`server`]) send the [`Presence`] count to everyone.
//! - **Streams.** `clock` streams the server's time once a second for as long as the page reads.
//!
//! The functions live in this library target so that `tests/schema.rs` can link them;
//! `src/main.rs` serves them next to the page (`examples/demo/run.sh` builds and starts it all).
//! State is in memory and lost when the server stops.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ephaptic::{Caller, Naming, event, expose};
use futures_util::stream::{self, Stream, StreamExt};

/// How functions are named on the wire: `create_todo` is called as `createTodo`. The server
/// ([`server`]) and the TypeScript export (`tests/schema.rs`) must agree, so both use this.
pub const NAMING: Naming = Naming::CamelCase;

/// The longest display name the identity loader accepts, in characters.
pub const MAX_NAME_CHARS: usize = 40;

/// The longest todo title, in characters.
pub const MAX_TITLE_CHARS: usize = 100;

/// The demo's ephaptic server settings (everything but the allowed origins, which `main` sets
/// once it knows its address).
pub fn server() -> ephaptic::Server {
    ephaptic::Server::new()
        .rename_all(NAMING)
        // Presence: everyone hears the count when a page arrives and when one leaves.
        .on_connect(|_caller| announce_presence())
        .on_disconnect(|_caller| announce_presence())
}

async fn announce_presence() {
    let online = ephaptic::metrics().map_or(0, |m| m.connections);
    ephaptic::emit(Presence { online }).await;
}

/// A todo item, as every page sees it.
#[ephaptic::model]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Todo {
    pub id: u64,
    pub title: String,
    pub done: bool,
    /// The display name of whoever created it.
    pub author: String,
}

/// How many connections the server has; sent to everyone when a page connects or leaves.
#[event]
#[derive(Debug, Clone)]
pub struct Presence {
    pub online: usize,
}

/// The title is empty (once trimmed) or longer than `max` characters.
#[derive(Debug)]
#[ephaptic::error(
    code = "INVALID_TITLE",
    message = "A todo needs a title of 1 to 100 characters."
)]
pub struct InvalidTitle {
    /// The longest title allowed, in characters.
    pub max: usize,
    /// The length of the title that was sent (trimmed), in characters.
    pub length: usize,
}

/// No todo has this id.
#[derive(Debug)]
#[ephaptic::error(code = "TODO_NOT_FOUND", message = "That todo does not exist.")]
pub struct NotFound {
    pub id: u64,
}

/// The in-memory store.
#[derive(Debug)]
struct Todos {
    next_id: u64,
    items: Vec<Todo>,
}

static TODOS: Mutex<Todos> = Mutex::new(Todos {
    next_id: 1,
    items: Vec::new(),
});

/// The store, even if a handler panicked while holding it (the data stays consistent: every
/// change is a single push or field write).
fn todos() -> MutexGuard<'static, Todos> {
    TODOS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The display name `raw` stands for: trimmed, non-empty, at most [`MAX_NAME_CHARS`] characters.
pub fn display_name(raw: &str) -> Option<String> {
    let name = raw.trim();
    (!name.is_empty() && name.chars().count() <= MAX_NAME_CHARS).then(|| name.to_owned())
}

/// The title `raw` stands for: trimmed, 1 to [`MAX_TITLE_CHARS`] characters.
pub fn valid_title(raw: &str) -> Result<String, InvalidTitle> {
    let title = raw.trim();
    let length = title.chars().count();
    if length == 0 || length > MAX_TITLE_CHARS {
        return Err(InvalidTitle {
            max: MAX_TITLE_CHARS,
            length,
        });
    }
    Ok(title.to_owned())
}

/// The page sends the user's display name as `auth` (`connect({ auth: () => name })`); it becomes
/// the connection's identity. A missing or invalid name leaves the connection anonymous.
#[ephaptic::identity_loader]
async fn load(auth: Option<String>) -> Option<String> {
    display_name(&auth?)
}

/// Every todo, oldest first.
#[expose]
async fn list_todos() -> Vec<Todo> {
    todos().items.clone()
}

/// Adds a todo by the caller; every page hears it on `todoCreated`.
#[expose(requires_login, broadcast = ["todoCreated"])]
async fn create_todo(caller: Caller, title: String) -> Result<Todo, InvalidTitle> {
    let title = valid_title(&title)?;
    let author = caller
        .identity()
        .map(ToString::to_string)
        .unwrap_or_default();
    let mut todos = todos();
    let todo = Todo {
        id: todos.next_id,
        title,
        done: false,
        author,
    };
    todos.next_id += 1;
    todos.items.push(todo.clone());
    Ok(todo)
}

/// Flips a todo between done and not done; every page hears the new state on `todoUpdated`.
#[expose(requires_login, broadcast = ["todoUpdated"])]
async fn toggle_todo(id: u64) -> Result<Todo, NotFound> {
    let mut todos = todos();
    let todo = todos
        .items
        .iter_mut()
        .find(|t| t.id == id)
        .ok_or(NotFound { id })?;
    todo.done = !todo.done;
    Ok(todo.clone())
}

/// Call once connected: tells the page the current count (the `Presence` event, to everyone)
/// and returns the name this connection is known by (null when the name was refused).
#[expose]
async fn hello(caller: Caller) -> Option<String> {
    announce_presence().await;
    caller.identity().map(ToString::to_string)
}

/// The server's time in Unix milliseconds: now, then at every whole second, until the client
/// stops reading (or disconnects).
#[expose]
async fn clock() -> impl Stream<Item = u64> {
    stream::unfold(false, |started| async move {
        if started {
            let into_second = unix_ms() % 1000;
            tokio::time::sleep(Duration::from_millis(1000 - into_second)).await;
        }
        Some((unix_ms(), true))
    })
    .boxed()
}

fn unix_ms() -> u64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_non_empty_and_short() {
        assert_eq!(display_name("  Ann "), Some("Ann".to_owned()));
        assert_eq!(display_name("   "), None);
        assert_eq!(display_name(&"é".repeat(40)), Some("é".repeat(40)));
        assert_eq!(display_name(&"x".repeat(41)), None);
    }

    #[test]
    fn titles_are_trimmed_and_bounded() {
        assert_eq!(valid_title(" milk ").unwrap(), "milk");
        let empty = valid_title("  ").unwrap_err();
        assert_eq!((empty.max, empty.length), (MAX_TITLE_CHARS, 0));
        assert_eq!(valid_title(&"x".repeat(101)).unwrap_err().length, 101);
        assert!(valid_title(&"x".repeat(100)).is_ok());
    }
}
