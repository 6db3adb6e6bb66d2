//! # The ephaptic demo: the Events tutorial, a live todo list and a chat
//!
//! One backend for two frontends (a React page and a Svelte page, `frontend/`), showing what
//! ephaptic does end to end:
//!
//! - **The Events tutorial.** [`SomethingHappened`] (`code = 1`, `message`,
//!   `isError = false`, the defaults written once with `#[ephaptic(default = ..)]`),
//!   `broadcast_event` (to everyone), `notify_user_one` (`to(1).emit`), `notify_first_three`
//!   (`to!(1, 2, 3)`) and `notify_user` (to a user the page picks). The server labels each
//!   event with how it was sent and by whom (`via`, `from`), so each page shows who received
//!   what; the notify functions answer what they reached ([`Reach`]: this server's connections,
//!   and whether the event went to the other servers).
//! - **Login by name.** The page sends a display name as `auth`; the identity loader
//!   ([`load`]) gives each name a number (the first name is user 1, the next user 2, ...), and
//!   that integer is the connection's identity, so `to(1)` means the first user who signed in.
//!   Functions that act as someone are `requires_login`.
//! - **Data operations.** `create_todo`, `toggle_todo` and `delete_todo` announce their result on
//!   the `todoCreated` / `todoUpdated` / `todoDeleted` channels; every open page refetches
//!   `list_todos` when one arrives, so it updates without a reload. Titles are checked and a bad
//!   one answers the typed error `INVALID_TITLE`.
//! - **A chat.** Rooms are groups (`Caller::join`, `ephaptic::group(..).emit`); direct messages
//!   go to every tab of one user (`to(user)`).
//! - **Who is online: presence.** Each signed-in page tracks itself in the [`LOBBY`] group with
//!   its [`User`] (`enter_lobby`: `caller.presence(..).track(user)`) and watches it
//!   (`client.presence("lobby")`); a user's tabs are one member, gone with the last of them.
//! - **A stream.** `clock` streams the server's time once a second.
//!
//! The functions live in this library target so that `tests/schema.rs` can link them;
//! `src/main.rs` serves them next to the built pages (`examples/demo/run.sh` builds and starts it
//! all). State is in memory and lost when the server stops.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ephaptic::{Caller, Naming, ServiceError, event, expose};
use futures_util::stream::{self, Stream, StreamExt};

/// How functions are named on the wire: `create_todo` is called as `createTodo`. The server
/// ([`server`]) and the TypeScript export (`tests/schema.rs`) must agree, so both use this.
pub const NAMING: Naming = Naming::CamelCase;

/// The longest display name the identity loader accepts, in characters.
pub const MAX_NAME_CHARS: usize = 40;

/// The longest todo title, in characters.
pub const MAX_TITLE_CHARS: usize = 100;

/// The longest chat message, in characters.
pub const MAX_TEXT_CHARS: usize = 500;

/// How many messages a room keeps for pages that join it later.
pub const ROOM_HISTORY: usize = 50;

/// The rooms a page may join.
pub const ROOMS: [&str; 2] = ["general", "random"];

/// The demo's ephaptic server settings (everything but the allowed origins, which `main` sets
/// once it knows its address).
pub fn server() -> ephaptic::Server {
    ephaptic::Server::new().rename_all(NAMING)
}

/// Locks `m` even if a handler panicked while holding it (every change below is a single
/// insert, push or field write, so the data stays consistent).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn unix_ms() -> u64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}

// --- users: login by name ------------------------------------------------------------------

/// A signed-in user: the number the server gave their name, and the name.
#[ephaptic::model]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: u64,
    pub name: String,
}

/// The names that signed in, in order: user `n` is `names[n - 1]` (a demo's handful of users:
/// a scan is enough).
static USERS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// The display name `raw` stands for: trimmed, non-empty, at most [`MAX_NAME_CHARS`] characters.
pub fn display_name(raw: &str) -> Option<String> {
    let name = raw.trim();
    (!name.is_empty() && name.chars().count() <= MAX_NAME_CHARS).then(|| name.to_owned())
}

/// The number of `name`: the one it was given before, else the next one (the first is 1).
pub fn user_id(name: &str) -> u64 {
    let mut names = lock(&USERS);
    let index = match names.iter().position(|n| n == name) {
        Some(index) => index,
        None => {
            names.push(name.to_owned());
            names.len() - 1
        }
    };
    index as u64 + 1
}

/// The user numbered `id`, if some name was given that number.
pub fn user(id: u64) -> Option<User> {
    let index = usize::try_from(id.checked_sub(1)?).ok()?;
    lock(&USERS).get(index).map(|name| User {
        id,
        name: name.clone(),
    })
}

/// The signed-in user behind `caller` (`None` when anonymous).
fn me(caller: &Caller) -> Option<User> {
    let id = caller.identity()?.as_i64()?;
    user(u64::try_from(id).ok()?)
}

/// The page sends the user's display name as `auth` (`connect({ auth: () => name })`); the
/// name's number becomes the connection's identity, so `ephaptic::to(1)` reaches every tab of
/// the first name that signed in. A missing or invalid name leaves the connection anonymous.
#[ephaptic::identity_loader]
async fn load(auth: Option<String>) -> Option<u64> {
    Some(user_id(&display_name(&auth?)?))
}

/// Who this connection is signed in as (null when anonymous). Pages call it after each
/// connection: after a server restart the same name may get another number.
#[expose]
async fn who_am_i(caller: Caller) -> Option<User> {
    me(&caller)
}

// --- the Events tutorial ---------------------------------------------------------------------

/// Something happened on the server: the Events tutorial's event (`code`, `message`, `isError`),
/// plus two fields the demo adds so that each page can show who received what: `via` and
/// `from`, filled in by the server. They are `skip_deserializing`, so a page sends the
/// tutorial's shape (`{ message }` is enough) and cannot forge them.
#[event]
#[derive(Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct SomethingHappened {
    #[ephaptic(default = 1)]
    pub code: i64,
    pub message: String,
    #[ephaptic(default = false)]
    pub is_error: bool,
    /// How it was sent: `broadcast`, `to(1)`, `to(1, 2, 3)` or `to(user N)` (the demo's addition).
    #[serde(skip_deserializing)]
    pub via: String,
    /// Who sent it (null when the sender was not signed in; the demo's addition).
    #[serde(skip_deserializing)]
    pub from: Option<User>,
}

impl SomethingHappened {
    /// The event as the demo sends it: labelled with how it is sent and by whom.
    fn labelled(self, via: impl Into<String>, caller: &Caller) -> Self {
        SomethingHappened {
            via: via.into(),
            from: me(caller),
            ..self
        }
    }
}

/// What a notify function's event reached: `emit`'s [`ephaptic::Sent`], in words a page can
/// show. `here` counts this server's connections only: with `--redis` the event also goes to
/// the other servers (`published`), whose connections it reaches after this answers, uncounted,
/// so `here` may be 0 while the event arrives elsewhere.
#[ephaptic::model]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reach {
    /// How many connections of this server it was handed to.
    pub here: usize,
    /// Whether it was handed on to the other servers too (only with `--redis`).
    pub published: bool,
}

impl From<ephaptic::Sent> for Reach {
    fn from(sent: ephaptic::Sent) -> Self {
        Reach {
            here: sent.local,
            published: sent.published,
        }
    }
}

/// Emits the event to everyone connected.
#[expose]
async fn broadcast_event(caller: Caller, event: SomethingHappened) {
    ephaptic::emit(event.labelled("broadcast", &caller)).await;
}

/// Emits the event to every tab of user 1 (the first name that signed in): the tutorial's
/// `to(1).emit(event)`. Answers what it reached.
#[expose(requires_login)]
async fn notify_user_one(caller: Caller, event: SomethingHappened) -> Reach {
    let event = event.labelled("to(1)", &caller);
    ephaptic::to(1).emit(event).await.into()
}

/// Emits the event to every tab of users 1, 2 and 3: the tutorial's `to(1, 2, 3)`. Answers
/// what it reached.
#[expose(requires_login)]
async fn notify_first_three(caller: Caller, event: SomethingHappened) -> Reach {
    let event = event.labelled("to(1, 2, 3)", &caller);
    ephaptic::to!(1, 2, 3).emit(event).await.into()
}

/// Emits the event to every tab of the user numbered `user_id`, and no one else. Answers what it
/// reached.
#[expose(requires_login)]
async fn notify_user(caller: Caller, user_id: u64, event: SomethingHappened) -> Reach {
    let event = event.labelled(format!("to(user {user_id})"), &caller);
    ephaptic::to(user_id).emit(event).await.into()
}

// --- todos: the data-operation pattern --------------------------------------------------------

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

#[derive(Debug)]
struct Todos {
    next_id: u64,
    items: Vec<Todo>,
}

static TODOS: Mutex<Todos> = Mutex::new(Todos {
    next_id: 1,
    items: Vec::new(),
});

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

/// Every todo, oldest first.
#[expose]
async fn list_todos() -> Vec<Todo> {
    lock(&TODOS).items.clone()
}

/// Adds a todo by the caller; every page hears it on `todoCreated`.
#[expose(requires_login, broadcast = ["todoCreated"])]
async fn create_todo(caller: Caller, title: String) -> Result<Todo, InvalidTitle> {
    let title = valid_title(&title)?;
    let author = me(&caller).map(|u| u.name).unwrap_or_default();
    let mut todos = lock(&TODOS);
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
    let mut todos = lock(&TODOS);
    let todo = todos
        .items
        .iter_mut()
        .find(|t| t.id == id)
        .ok_or(NotFound { id })?;
    todo.done = !todo.done;
    Ok(todo.clone())
}

/// Removes a todo; every page hears the removed todo on `todoDeleted`.
#[expose(requires_login, broadcast = ["todoDeleted"])]
async fn delete_todo(id: u64) -> Result<Todo, NotFound> {
    let mut todos = lock(&TODOS);
    let index = todos
        .items
        .iter()
        .position(|t| t.id == id)
        .ok_or(NotFound { id })?;
    Ok(todos.items.remove(index))
}

// --- chat: rooms and direct messages ---------------------------------------------------------

/// A message to a room, heard by every connection in it.
#[event]
#[derive(Debug, Clone)]
pub struct ChatMessage {
    pub room: String,
    pub from: User,
    pub text: String,
    /// When the server received it, in Unix milliseconds.
    pub at: u64,
}

/// A message to one user, heard by every tab of that user and no one else.
#[event]
#[derive(Debug, Clone)]
pub struct DirectMessage {
    pub from: User,
    pub to: User,
    pub text: String,
    /// When the server received it, in Unix milliseconds.
    pub at: u64,
}

/// A chat message is empty (once trimmed) or longer than `max` characters.
#[derive(Debug)]
#[ephaptic::error(
    code = "INVALID_TEXT",
    message = "A message needs 1 to 500 characters."
)]
pub struct InvalidText {
    pub max: usize,
    pub length: usize,
}

/// There is no such room (see [`ROOMS`]).
#[derive(Debug)]
#[ephaptic::error(code = "NO_SUCH_ROOM", message = "There is no such room.")]
pub struct NoSuchRoom {
    pub room: String,
    /// The rooms there are.
    pub rooms: Vec<String>,
}

/// No user has this number.
#[derive(Debug)]
#[ephaptic::error(code = "NO_SUCH_USER", message = "There is no such user.")]
pub struct NoSuchUser {
    pub id: u64,
}

static HISTORY: Mutex<Option<HashMap<String, VecDeque<ChatMessage>>>> = Mutex::new(None);

/// The text `raw` stands for: trimmed, 1 to [`MAX_TEXT_CHARS`] characters.
pub fn valid_text(raw: &str) -> Result<String, InvalidText> {
    let text = raw.trim();
    let length = text.chars().count();
    if length == 0 || length > MAX_TEXT_CHARS {
        return Err(InvalidText {
            max: MAX_TEXT_CHARS,
            length,
        });
    }
    Ok(text.to_owned())
}

fn room_group(room: &str) -> Result<String, NoSuchRoom> {
    if ROOMS.contains(&room) {
        Ok(format!("room:{room}"))
    } else {
        Err(NoSuchRoom {
            room: room.to_owned(),
            rooms: ROOMS.iter().map(ToString::to_string).collect(),
        })
    }
}

/// The rooms a page may join.
#[expose]
async fn rooms() -> Vec<String> {
    ROOMS.iter().map(ToString::to_string).collect()
}

/// Joins `room` (leaving any other), and returns its recent messages, oldest first. A page calls
/// it again after each reconnection: a connection's rooms end with it.
#[expose(requires_login)]
async fn join_room(caller: Caller, room: String) -> Result<Vec<ChatMessage>, NoSuchRoom> {
    let group = room_group(&room)?;
    for other in caller.groups() {
        if other != group && other.starts_with("room:") {
            caller.leave(&other);
        }
    }
    caller.join_ready(&group).await;
    let history = lock(&HISTORY);
    Ok(history
        .as_ref()
        .and_then(|h| h.get(&room))
        .map(|messages| messages.iter().cloned().collect())
        .unwrap_or_default())
}

/// Sends `text` to everyone in `room` (the sender too, once it joined).
#[expose(requires_login)]
async fn send_message(caller: Caller, room: String, text: String) -> ephaptic::Result<ChatMessage> {
    let group = room_group(&room).map_err(ServiceError::into_error)?;
    let text = valid_text(&text).map_err(ServiceError::into_error)?;
    let from = me(&caller).ok_or_else(|| NoSuchUser { id: 0 }.into_error())?;
    let message = ChatMessage {
        room: room.clone(),
        from,
        text,
        at: unix_ms(),
    };
    {
        let mut history = lock(&HISTORY);
        let room_history = history
            .get_or_insert_with(HashMap::new)
            .entry(room)
            .or_default();
        room_history.push_back(message.clone());
        if room_history.len() > ROOM_HISTORY {
            room_history.pop_front();
        }
    }
    ephaptic::group(group).emit(message.clone()).await;
    Ok(message)
}

/// Sends `text` to every tab of the user numbered `to`, and no one else; the sender's page shows
/// the returned message itself.
#[expose(requires_login)]
async fn send_direct(caller: Caller, to: u64, text: String) -> ephaptic::Result<DirectMessage> {
    let text = valid_text(&text).map_err(ServiceError::into_error)?;
    let recipient = user(to).ok_or_else(|| NoSuchUser { id: to }.into_error())?;
    let from = me(&caller).ok_or_else(|| NoSuchUser { id: 0 }.into_error())?;
    let message = DirectMessage {
        from,
        to: recipient,
        text,
        at: unix_ms(),
    };
    ephaptic::to(to).emit(message.clone()).await;
    Ok(message)
}

// --- who is online: presence ------------------------------------------------------------------

/// The presence group of every signed-in page: who is online is its member list.
pub const LOBBY: &str = "lobby";

// Each page is tracked in the lobby with its user (number and name): `schema.ts` then types the
// lobby's diffs as `PresenceDiff<User>`, so a page shows names without asking for them.
ephaptic::presence_meta!(User);

/// Tracks this connection in the lobby as its user, which also lets it watch the lobby (the
/// default rule: a connection may watch a group it tracks itself in). Pages call it as the
/// `enter` of `client.presence("lobby")`, so before each watch: a new connection (after a
/// reconnection, or a restarted server) is tracked again before it asks for the list. The entry
/// goes with the connection, so a closed page leaves the list by itself.
#[expose(requires_login)]
async fn enter_lobby(caller: Caller) -> ephaptic::Result<()> {
    let user = me(&caller).ok_or_else(|| NoSuchUser { id: 0 }.into_error())?;
    caller.presence(LOBBY).track(user).await
}

// --- a stream ---------------------------------------------------------------------------------

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
    fn each_name_keeps_its_number() {
        let a = user_id("unit-test-a");
        let b = user_id("unit-test-b");
        assert_ne!(a, b);
        assert_eq!(user_id("unit-test-a"), a);
        assert_eq!(user(a).map(|u| u.name), Some("unit-test-a".to_owned()));
        assert_eq!(user(0), None);
    }

    #[test]
    fn titles_and_texts_are_trimmed_and_bounded() {
        assert_eq!(valid_title(" milk ").unwrap(), "milk");
        let empty = valid_title("  ").unwrap_err();
        assert_eq!((empty.max, empty.length), (MAX_TITLE_CHARS, 0));
        assert_eq!(valid_title(&"x".repeat(101)).unwrap_err().length, 101);
        assert!(valid_title(&"x".repeat(100)).is_ok());
        assert_eq!(valid_text(" hi ").unwrap(), "hi");
        assert_eq!(valid_text(&"x".repeat(501)).unwrap_err().length, 501);
    }

    #[test]
    fn only_known_rooms() {
        assert_eq!(room_group("general").unwrap(), "room:general");
        assert_eq!(room_group("nope").unwrap_err().rooms, ROOMS);
    }
}
