//! Binding a call's `args` (by position) and `kwargs` (by name) to a function's parameters, and
//! the `VALIDATION_ERROR` that says exactly what was wrong and where.

use serde::Serialize;
use serde::de::{self, DeserializeOwned, Deserializer, Visitor};

use crate::error::Error;
use crate::wire::{MAX_NESTING, RawFrame, SmallList, Span};

/// What binding and answering a call need to know of its function: the wire name and the
/// parameters that come from the wire, in order (copied from its `FunctionDef`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct CallSig {
    pub name: &'static str,
    pub params: &'static [&'static str],
}

/// A type that can be a parameter of an exposed function: anything `Deserialize` that owns its
/// data.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a parameter of an exposed function",
    label = "this type cannot be read from a call's arguments",
    note = "derive `serde::Deserialize` for it, use an owned type (`String`, not `&str`), or take `ephaptic::Caller` for the caller's context"
)]
pub trait Argument: DeserializeOwned + Send + 'static {}

impl<T: DeserializeOwned + Send + 'static> Argument for T {}

/// One step of the path to a bad value: a parameter or field name, or a list index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Loc {
    /// A parameter, field or map key.
    Key(String),
    /// A position in a list (or in `args`).
    Index(usize),
}

/// One thing wrong with a call's arguments, sent as an item of the `VALIDATION_ERROR` data
/// list: `{type, loc, msg, input}`.
#[derive(Debug, Clone, Serialize)]
pub struct Issue {
    /// What kind of problem: `missing`, `multiple_values`, `unexpected_argument`,
    /// `unexpected_keyword_argument`, `invalid_type`, `invalid_value`, `invalid_length`,
    /// `unknown_variant`, `extra_forbidden` or `value_error`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The path to the bad value, starting at the parameter name.
    pub loc: Vec<Loc>,
    /// A readable description.
    pub msg: String,
    /// The offending value as sent (nil when it is missing).
    pub input: rmpv::Value,
}

/// Collects the arguments of one call; generated shims call [`Binder::take`] once per wire
/// parameter, then [`Binder::finish`].
#[doc(hidden)]
#[derive(Debug)]
pub struct Binder<'a> {
    sig: CallSig,
    frame: &'a [u8],
    /// Where each parameter's value is; `None` in the common case of positional arguments
    /// only, no more than the parameters, where `positional` says it directly.
    slots: Option<SmallList<Option<Span>, 6>>,
    positional: &'a [Span],
    issues: Issues,
}

/// The most issues a `VALIDATION_ERROR` lists; the rest are counted in one last item, so that
/// a call with a million bad arguments gets a reply of the size of a few, not a million.
pub(crate) const MAX_ISSUES: usize = 16;

/// The longest `msg` an issue carries, in bytes; a longer one is cut, and ends in "…". A
/// message quotes what the client sent (a keyword, a string of the wrong type), and the
/// joined message repeats each `msg` once more, so without a cap a reply carried the client's
/// text three times over: a 4 KB unknown keyword got a 12 KB reply (a fuzz finding,
/// `fuzz/tests.rs`). The whole value is still in the issue's `input` or `loc`.
pub(crate) const MAX_MSG: usize = 200;

/// The issues of one call: the first [`MAX_ISSUES`], and how many more there were.
#[derive(Debug, Default)]
struct Issues {
    listed: Vec<Issue>,
    more: usize,
}

impl Issues {
    fn push(&mut self, mut issue: Issue) {
        if self.listed.len() < MAX_ISSUES {
            clip(&mut issue.msg);
            self.listed.push(issue);
        } else {
            self.more += 1;
        }
    }

    fn is_empty(&self) -> bool {
        self.listed.is_empty()
    }
}

impl<'a> Binder<'a> {
    #[inline]
    pub(crate) fn new(sig: CallSig, frame: &'a [u8], raw: &'a RawFrame) -> Self {
        if !raw.args_not_array
            && !raw.kwargs_not_map
            && raw.kwargs.is_empty()
            && raw.args.len() <= sig.params.len()
        {
            return Binder {
                sig,
                frame,
                slots: None,
                positional: &raw.args,
                issues: Issues::default(),
            };
        }
        Self::by_name(sig, frame, raw)
    }

    /// The general case: keyword arguments, too many arguments, or malformed lists.
    #[cold]
    fn by_name(sig: CallSig, frame: &'a [u8], raw: &'a RawFrame) -> Self {
        let params = sig.params;
        let mut slots = SmallList::filled(params.len());
        let mut issues = Issues::default();
        if raw.args_not_array {
            issues.push(Issue::plain(
                "invalid_type",
                vec![Loc::Key("args".into())],
                "'args' must be a list".into(),
            ));
        }
        if raw.kwargs_not_map {
            issues.push(Issue::plain(
                "invalid_type",
                vec![Loc::Key("kwargs".into())],
                "'kwargs' must be a map with string keys".into(),
            ));
        }
        for (slot, arg) in slots.iter_mut().zip(raw.args.iter()) {
            *slot = Some(*arg);
        }
        if let Some(first) = raw.args.get(params.len()) {
            // Surplus arguments are one problem, reported once, at the first of them.
            issues.push(Issue {
                kind: "unexpected_argument",
                loc: vec![Loc::Index(params.len())],
                msg: format!(
                    "'{}' takes {} positional argument{} but {} were given",
                    sig.name,
                    params.len(),
                    if params.len() == 1 { "" } else { "s" },
                    raw.args.len()
                ),
                input: decode(first.of(frame)),
            });
        }
        for (key, value) in raw.kwargs.iter() {
            let key = std::str::from_utf8(key.of(frame)).unwrap_or_default();
            let value = *value;
            match params.iter().position(|p| *p == key) {
                Some(i) if slots[i].is_some() => issues.push(Issue {
                    kind: "multiple_values",
                    loc: vec![Loc::Key(key.into())],
                    msg: format!("multiple values for argument '{key}'"),
                    input: decode(value.of(frame)),
                }),
                Some(i) => slots[i] = Some(value),
                None => issues.push(Issue {
                    kind: "unexpected_keyword_argument",
                    loc: vec![Loc::Key(key.into())],
                    msg: format!("got an unexpected keyword argument '{key}'"),
                    input: decode(value.of(frame)),
                }),
            }
        }
        Binder {
            sig,
            frame,
            slots: Some(slots),
            positional: &[],
            issues,
        }
    }

    /// Deserialises parameter `index`. `None` means it was missing or invalid; the reason is
    /// kept for [`finish`](Self::finish). An absent `Option<T>` parameter binds to `None`.
    #[inline]
    pub fn take<T: DeserializeOwned>(&mut self, index: usize) -> Option<T> {
        let slot = match &self.slots {
            None => self.positional.get(index).copied(),
            Some(slots) => slots[index],
        };
        if let Some(span) = slot {
            // Valid arguments decode on the fast path (`unpack`); anything it leaves is
            // decoded again by `rmp_serde`, to bind it or to say where it went wrong.
            if let Ok(v) = crate::wire::unpack::<T>(span.of(self.frame)) {
                return Some(v);
            }
        }
        self.take_thoroughly(index, slot)
    }

    /// [`take`](Self::take) off the fast path: with `rmp_serde` and the path to what is wrong,
    /// or for a missing parameter.
    #[cold]
    fn take_thoroughly<T: DeserializeOwned>(
        &mut self,
        index: usize,
        slot: Option<Span>,
    ) -> Option<T> {
        let name = self.sig.params[index];
        match slot {
            Some(span) => {
                let bytes = span.of(self.frame);
                let mut de = rmp_serde::Deserializer::from_read_ref(bytes).with_human_readable();
                de.set_max_depth(MAX_NESTING);
                match serde_path_to_error::deserialize::<_, T>(&mut de) {
                    Ok(v) => Some(v),
                    Err(e) => {
                        self.issues.push(Issue::explain::<T>(name, bytes, e));
                        None
                    }
                }
            }
            None => match T::deserialize(Missing) {
                Ok(v) => Some(v),
                Err(_) => {
                    self.issues.push(Issue::plain(
                        "missing",
                        vec![Loc::Key(name.into())],
                        format!("missing a required argument: '{name}'"),
                    ));
                    None
                }
            },
        }
    }

    /// `Ok` when every parameter bound; otherwise the `VALIDATION_ERROR` listing every issue.
    #[inline]
    pub fn finish(self) -> Result<(), Error> {
        if self.issues.is_empty() {
            return Ok(());
        }
        self.fail()
    }

    #[cold]
    fn fail(self) -> Result<(), Error> {
        let Issues { mut listed, more } = self.issues;
        if more > 0 {
            listed.push(Issue::plain(
                "too_many_issues",
                Vec::new(),
                format!("and {more} more problem(s) with the arguments, not listed"),
            ));
        }
        let message = listed
            .iter()
            .map(|i| i.msg.as_str())
            .collect::<Vec<_>>()
            .join("; ");
        Err(Error::new("VALIDATION_ERROR", message).with_data(&listed))
    }
}

/// Refuses, before anything is decoded, a call whose arguments hold more than `max_values`
/// values (`Server::max_frame_nodes`) or nest deeper than the decoders go: `VALIDATION_ERROR`
/// with one issue, `too_large` or `too_deep`, that names the bound.
pub(crate) fn check_cost(frame: &[u8], raw: &RawFrame, max_values: usize) -> Result<(), Error> {
    use crate::wire::cost::{TooCostly, check};
    let Err(why) = check(frame, raw, max_values) else {
        return Ok(());
    };
    let issue = match why {
        TooCostly::Values => Issue::plain(
            "too_large",
            Vec::new(),
            format!(
                "the arguments hold more than {max_values} values (each list, map, key and \
                 scalar counts one), the most this server decodes for one call \
                 (Server::max_frame_nodes): send fewer per call"
            ),
        ),
        TooCostly::Depth => Issue::plain(
            "too_deep",
            Vec::new(),
            format!(
                "an argument nests lists or maps {MAX_NESTING} deep or more, deeper than this \
                 server decodes"
            ),
        ),
    };
    let message = issue.msg.clone();
    Err(Error::new("VALIDATION_ERROR", message).with_data(&[issue]))
}

impl Issue {
    fn plain(kind: &'static str, loc: Vec<Loc>, msg: String) -> Self {
        Issue {
            kind,
            loc,
            msg,
            input: rmpv::Value::Nil,
        }
    }

    /// Describes why `bytes` is not a `T`. The fast decoder's errors are terse ("wrong msgpack
    /// marker"), so on this slow path the value is decoded once more through a dynamic value,
    /// whose errors are serde's readable ones ("invalid type: string \"x\", expected i64").
    fn explain<T: DeserializeOwned>(
        param: &str,
        bytes: &[u8],
        fast: serde_path_to_error::Error<rmp_serde::decode::Error>,
    ) -> Self {
        let value = decode(bytes);
        let (path, text) = match serde_path_to_error::deserialize::<_, T>(value.clone()) {
            Err(slow) => {
                let text = slow.inner().to_string();
                let text = text
                    .strip_prefix("error while decoding value: ")
                    .map(str::to_owned)
                    .unwrap_or(text);
                (slow.path().clone(), text)
            }
            Ok(_) => (fast.path().clone(), fast.inner().to_string()),
        };
        let mut loc = vec![Loc::Key(param.into())];
        for seg in path.iter() {
            loc.push(match seg {
                serde_path_to_error::Segment::Seq { index } => Loc::Index(*index),
                serde_path_to_error::Segment::Map { key } => Loc::Key(key.clone()),
                serde_path_to_error::Segment::Enum { variant } => Loc::Key(variant.clone()),
                serde_path_to_error::Segment::Unknown => Loc::Key("?".into()),
            });
        }
        let input = value_at(&value, &loc[1..]);
        let (kind, missing_field) = classify(&text);
        let input = match missing_field {
            // serde reports a missing field at the struct that lacks it; point at the field.
            Some(field) => {
                loc.push(Loc::Key(field));
                rmpv::Value::Nil
            }
            None => input,
        };
        let path = render(&loc);
        Issue {
            kind,
            loc,
            msg: format!("{path}: {text}"),
            input,
        }
    }
}

/// Cuts `msg` to at most [`MAX_MSG`] bytes (at a character boundary), marking the cut.
fn clip(msg: &mut String) {
    if msg.len() > MAX_MSG {
        let mut end = MAX_MSG - '…'.len_utf8();
        while !msg.is_char_boundary(end) {
            end -= 1;
        }
        msg.truncate(end);
        msg.push('…');
    }
}

/// Sorts serde's message into a stable `type`, and for a missing field, names it.
fn classify(text: &str) -> (&'static str, Option<String>) {
    let field = |prefix: &str| {
        text.strip_prefix(prefix)
            .map(|rest| rest.trim_matches('`').to_string())
    };
    if let Some(f) = field("missing field ") {
        return ("missing", Some(f));
    }
    let kind = if text.starts_with("invalid type") {
        "invalid_type"
    } else if text.starts_with("invalid value") {
        "invalid_value"
    } else if text.starts_with("invalid length") {
        "invalid_length"
    } else if text.starts_with("unknown variant") {
        "unknown_variant"
    } else if text.starts_with("unknown field") {
        "extra_forbidden"
    } else {
        "value_error"
    };
    (kind, None)
}

fn render(loc: &[Loc]) -> String {
    let mut out = String::new();
    for (i, part) in loc.iter().enumerate() {
        match part {
            Loc::Key(k) if i == 0 => out.push_str(k),
            Loc::Key(k) => {
                out.push('.');
                out.push_str(k);
            }
            Loc::Index(n) => out.push_str(&format!("[{n}]")),
        }
    }
    out
}

/// A client's value as sent, for an issue's `input`; nil when it is nested too deep to decode
/// safely (`rmpv` counts two steps per container level).
fn decode(mut bytes: &[u8]) -> rmpv::Value {
    rmpv::decode::read_value_with_max_depth(&mut bytes, 2 * MAX_NESTING + 2)
        .unwrap_or(rmpv::Value::Nil)
}

/// The value at `path` inside `root`, or nil where the path leaves it.
fn value_at(root: &rmpv::Value, path: &[Loc]) -> rmpv::Value {
    let mut cur = root;
    for step in path {
        let next = match (step, cur) {
            (Loc::Index(i), rmpv::Value::Array(items)) => items.get(*i),
            (Loc::Key(k), rmpv::Value::Map(entries)) => entries
                .iter()
                .find(|(key, _)| key.as_str() == Some(k.as_str()))
                .map(|(_, v)| v),
            // An enum variant step names the variant, which is the map's only key.
            (Loc::Key(_), other) => Some(other),
            _ => None,
        };
        match next {
            Some(v) => cur = v,
            None => return rmpv::Value::Nil,
        }
    }
    cur.clone()
}

/// Stands for an argument the client did not send: `Option<T>` reads it as `None`, every other
/// type reports it as missing.
pub(crate) struct Missing;

impl<'de> Deserializer<'de> for Missing {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("missing"))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_none()
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}
