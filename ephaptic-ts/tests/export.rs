//! The exporter over a fixture that covers every shape the export must handle: structs, enums in
//! every serde representation, Option, Vec, HashMap, nested types, renames, defaults, generics,
//! 64-bit integers, UUIDs, streams, errors and channels, plus the README's example. The output is
//! a checked-in snapshot (`tests/ts/schema.ts`), which `tests/ts/snippet.ts` type-checks against
//! with `tsc --strict` in CI (see test.sh). Regenerate with
//! `EPHAPTIC_TS_UPDATE=1 cargo test -p ephaptic-ts --test export`.

use std::collections::HashMap;

use ephaptic::{Caller, event, expose, model};
use futures_util::stream::{self, Stream};

// --- The README's example -----------------------------------------------------------------

/// Something happened; tell everyone.
#[event]
#[derive(Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct SomethingHappened {
    /// What happened, as a number.
    #[ephaptic(default = 1)]
    pub code: i32,
    #[ephaptic(default = "it happened")]
    pub message: String,
    #[serde(default)]
    pub is_error: bool,
}

/// Broadcasts an event to every connected client.
#[expose(name = "broadcastEvent")]
async fn broadcast_event(event: SomethingHappened) -> ephaptic::Result<()> {
    ephaptic::emit(event).await;
    Ok(())
}

#[expose]
async fn greet(user: Caller, to: u64) -> ephaptic::Result<String> {
    Ok(format!("{to} from {:?}", user.identity()))
}

// --- Parity-style functions the snippet uses ------------------------------------------------

/// Adds two numbers.
#[expose]
async fn add(a: i64, b: i64) -> i64 {
    a + b
}

/// Counts down from `n`.
#[expose]
async fn countdown(n: u32) -> impl Stream<Item = u32> {
    stream::iter((1..=n).rev())
}

#[model]
#[derive(Debug, Clone)]
pub struct Todo {
    pub id: u64,
    pub title: String,
    pub done: bool,
}

#[expose(broadcast = ["todoCreated"])]
async fn create_todo(title: String) -> Todo {
    Todo {
        id: 1,
        title,
        done: false,
    }
}

// --- Coverage ---------------------------------------------------------------------------------

/// Externally tagged (serde's default).
#[model]
#[derive(Debug)]
pub enum Shape {
    Circle { radius: f64 },
    Square(f64),
    Empty,
}

/// Internally tagged.
#[model]
#[derive(Debug)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Command {
    Start { at: u64 },
    Stop,
}

/// Adjacently tagged.
#[model]
#[derive(Debug)]
#[serde(tag = "t", content = "c")]
pub enum Envelope {
    Text(String),
    Number(i32),
}

/// Untagged.
#[model]
#[derive(Debug)]
#[serde(untagged)]
pub enum Loose {
    Name(String),
    Count(u32),
}

/// A plain string enum.
#[model]
#[derive(Debug)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Level {
    Low,
    VeryHigh,
}

/// A struct with renames, defaults, options, maps, nesting and wide integers.
#[model]
#[derive(Debug)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    pub user_id: uuid::Uuid,
    #[serde(rename = "displayName")]
    pub name: String,
    pub nickname: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub scores: HashMap<String, i64>,
    pub level: Level,
    pub big: u64,
    pub signed: i64,
    pub ratio: f32,
    #[serde(skip_deserializing)]
    pub computed: u32,
    pub shape: Shape,
    pub history: Vec<Command>,
}

/// A generic page, used with a concrete type by a function.
#[model]
#[derive(Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

#[expose]
async fn save_profile(profile: Profile, dry_run: Option<bool>) -> Profile {
    let _ = dry_run;
    profile
}

#[expose]
async fn list_todos(cursor: Option<String>) -> Page<Todo> {
    let _ = cursor;
    Page {
        items: vec![],
        next: None,
    }
}

#[expose]
async fn send(envelope: Envelope, loose: Loose) -> Vec<Envelope> {
    let _ = loose;
    vec![envelope]
}

#[ephaptic::error(code = "NOT_ALLOWED", message = "You may not do that.")]
#[derive(Debug)]
/// The caller lacks a permission.
pub struct NotAllowed {
    pub permission: String,
}

#[ephaptic::error(code = "GONE", message = "It is gone.")]
#[derive(Debug)]
pub struct Gone;

#[derive(Debug)]
#[ephaptic::error(code = "STREAM_BROKE", message = "The stream broke.")]
pub struct StreamBroke {
    pub after: u32,
}

#[expose(requires_login)]
async fn delete_profile(id: uuid::Uuid) -> Result<(), NotAllowed> {
    let _ = id;
    Err(NotAllowed {
        permission: "admin".into(),
    })
}

#[expose]
async fn watch(ids: Vec<u64>) -> Result<impl Stream<Item = Result<Profile, StreamBroke>>, Gone> {
    let _ = ids;
    Ok(stream::iter(Vec::new()))
}

#[expose]
fn blocking_sum(values: Vec<i32>) -> i32 {
    values.iter().sum()
}

#[expose]
async fn echo_any(value: ephaptic::Value) -> ephaptic::Value {
    value
}

/// Named like a client member: only reachable through `client.call("ready")`.
#[expose]
async fn ready() -> bool {
    true
}

/// Named like an `Object.prototype` member: the client's proxy never forwards it.
#[expose(name = "toString")]
async fn to_string_fn() -> String {
    String::new()
}

/// A name tools probe on any object (`JSON.stringify`): never forwarded either.
#[expose(name = "toJSON", broadcast = ["jsonChanged"])]
async fn to_json() -> u32 {
    1
}

/// A unit-only channel payload from a function returning a list.
#[expose(broadcast = ["levelsChanged"])]
async fn set_levels(levels: Vec<Level>) -> Vec<Level> {
    levels
}

const SCHEMA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/ts/schema.ts");
const JSON: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/ts/schema.json");

#[test]
fn the_snapshot_is_current() {
    if let Err(e) = ephaptic_ts::check(SCHEMA) {
        panic!("{e}");
    }
}

#[test]
fn the_json_snapshot_is_current() {
    let fresh = ephaptic_ts::Exporter::new().json_schema().unwrap();
    if std::env::var_os("EPHAPTIC_TS_UPDATE").is_some() {
        std::fs::write(JSON, &fresh).unwrap();
    }
    assert_eq!(
        std::fs::read_to_string(JSON).unwrap(),
        fresh,
        "regenerate with EPHAPTIC_TS_UPDATE=1"
    );
}

#[test]
fn arguments_get_input_shapes_and_results_keep_full_ones() {
    let ts = ephaptic_ts::render().unwrap();
    assert!(ts.contains(r#"export type SomethingHappenedInput = EphapticFlatten<Omit<SomethingHappened, "code" | "message" | "isError"> & Partial<Pick<SomethingHappened, "code" | "message" | "isError">>>;"#), "{ts}");
    // `#[ephaptic(default = ..)]` shows its value in the field's docs, after the user's own.
    assert!(
        ts.contains("/**\n * What happened, as a number.\n * @default 1\n */\ncode: number,"),
        "{ts}"
    );
    assert!(
        ts.contains("/**\n * @default \"it happened\"\n */\nmessage: string,"),
        "{ts}"
    );
    assert!(
        ts.contains("broadcastEvent(event: SomethingHappenedInput): Promise<null>;"),
        "{ts}"
    );
    // A skip_deserializing field cannot be sent at all; defaulted and Option fields may be left out.
    assert!(ts.contains(r#"export type ProfileInput = EphapticFlatten<Omit<Profile, "nickname" | "tags" | "scores" | "computed"> & Partial<Pick<Profile, "nickname" | "tags" | "scores">>>;"#), "{ts}");
    assert!(
        ts.contains(
            "save_profile(profile: ProfileInput, dry_run?: boolean | null): Promise<Profile>;"
        ),
        "{ts}"
    );
    // Events and results use the full shape.
    assert!(
        ts.contains(r#""SomethingHappened": SomethingHappened;"#),
        "{ts}"
    );
}

#[test]
fn streams_errors_channels_and_queries_are_typed() {
    let ts = ephaptic_ts::render().unwrap();
    assert!(
        ts.contains("watch(ids: Array<number>): Promise<AsyncIterableIterator<Profile>>;"),
        "{ts}"
    );
    assert!(
        ts.contains(r#""GONE": Gone;"#) && ts.contains("export type Gone = null;"),
        "a unit error has null data: {ts}"
    );
    assert!(ts.contains(r#""NOT_ALLOWED": NotAllowed;"#), "{ts}");
    assert!(ts.contains(r#""todoCreated": Todo;"#), "{ts}");
    assert!(ts.contains(r#""levelsChanged": Array<Level>;"#), "{ts}");
    assert!(ts.contains(r#"list_todos(cursor?: string | null): { queryKey: readonly ["list_todos", (string | null)?]; queryFn: () => Promise<Page<Todo>> };"#), "{ts}");
    assert!(
        ts.contains("export type Page<T> = "),
        "generic declarations stay generic: {ts}"
    );
    assert!(
        ts.contains("echo_any(value: unknown): Promise<unknown>;"),
        "{ts}"
    );
    assert!(
        ts.contains("rmpv::Value"),
        "the header names types exported as unknown: {ts}"
    );
}

#[test]
fn a_bigint_client_gets_wide_integers_as_number_or_bigint() {
    let ts = ephaptic_ts::Exporter::new()
        .large_int("number | bigint")
        .render_for(&ephaptic::introspect().unwrap());
    assert!(
        ts.contains("add(a: number | bigint, b: number | bigint): Promise<number | bigint>;"),
        "{ts}"
    );
    assert!(
        ts.contains("countdown(n: number)"),
        "32-bit integers stay number: {ts}"
    );
}

#[test]
fn camel_case_naming_matches_the_server() {
    let ts = ephaptic_ts::Exporter::new()
        .rename_all(ephaptic::Naming::CamelCase)
        .render()
        .unwrap();
    assert!(
        ts.contains("createTodo(title: string): Promise<Todo>;"),
        "{ts}"
    );
    assert!(
        ts.contains("broadcastEvent(event: SomethingHappenedInput)"),
        "explicit names stay: {ts}"
    );
    assert!(ts.contains("announced by `createTodo`"), "{ts}");
}

#[test]
fn names_the_client_never_forwards_are_not_typed_as_functions() {
    let ts = ephaptic_ts::render().unwrap();
    for name in ["toString", "toJSON", "ready"] {
        assert!(
            ts.contains(&format!(
                "  // `{name}` clashes with a client member: call it as `client.call(\"{name}\", ...)`."
            )),
            "{name}: {ts}"
        );
    }
    // Not even as a query: `client.queries` is a proxy too (a `ready` query is fine there).
    for name in ["toString", "toJSON"] {
        assert!(
            !ts.contains(&format!("  {name}(")),
            "{name} is typed somewhere: {ts}"
        );
    }
    // The channel stays an event; the function gets no mutation helper.
    assert!(ts.contains("  \"jsonChanged\": number;"), "{ts}");
    assert!(!ts.contains("\"toJSON\": { params"), "{ts}");
}
