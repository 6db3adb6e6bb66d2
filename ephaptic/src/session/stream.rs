//! Who gets an event, in one type: a [`Stream`] is everyone, one identity, or a group, with
//! every name it goes by (its key across servers, its name in event frames, its kind for the
//! retention). Delivery, the history, resume, the hub's interest and the backplane's channels
//! all speak it, so the three-way switch over "who" is written where each name is made, here;
//! the public [`Audience`](crate::Audience) becomes its streams once, where an event is sent.

use std::borrow::Cow;

use crate::identity::Identity;

/// The kinds of stream, each with its own [`Retention`](crate::Retention).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamKind {
    /// One per identity: its `to(identity)` events (default: 256 events).
    User,
    /// Events to everyone (default: 1024 events).
    Broadcast,
    /// One per group (default: 1024 events).
    Group,
}

impl StreamKind {
    /// Its name in the server's metrics (`user`, `broadcast`, `group`).
    pub(crate) fn name(self) -> &'static str {
        match self {
            StreamKind::User => "user",
            StreamKind::Broadcast => "broadcast",
            StreamKind::Group => "group",
        }
    }
}

/// The wire name of the stream of events to everyone.
pub(crate) const ALL_WIRE: &str = "b";
/// The wire name of a connection's own identity's stream.
pub(crate) const USER_WIRE: &str = "u";

/// Who gets an event: everyone, every connection of one identity, or a group's members.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Stream<'a> {
    All,
    User(&'a Identity),
    Group(&'a str),
}

impl<'a> Stream<'a> {
    /// Its name across servers (history keys): `b`, `u:<identity key>`, `g:<group>`.
    pub fn key(&self) -> String {
        match self {
            Stream::All => ALL_WIRE.to_owned(),
            Stream::User(id) => format!("u:{}", id.key()),
            Stream::Group(g) => format!("g:{g}"),
        }
    }

    /// Its name in event frames and positions (docs/PROTOCOL.md 5.6): `b`, `u` (a connection
    /// only ever reads its own identity's), `g:<group>`.
    pub fn wire(&self) -> Cow<'static, str> {
        match self {
            Stream::All => Cow::Borrowed(ALL_WIRE),
            Stream::User(_) => Cow::Borrowed(USER_WIRE),
            Stream::Group(g) => Cow::Owned(format!("g:{g}")),
        }
    }

    /// Which retention it has.
    pub fn kind(&self) -> StreamKind {
        match self {
            Stream::All => StreamKind::Broadcast,
            Stream::User(_) => StreamKind::User,
            Stream::Group(_) => StreamKind::Group,
        }
    }

    #[cfg(test)]
    pub fn to_owned(self) -> OwnedStream {
        match self {
            Stream::All => OwnedStream::All,
            Stream::User(id) => OwnedStream::User(id.clone()),
            Stream::Group(g) => OwnedStream::Group(g.to_owned()),
        }
    }
}

/// A [`Stream`] that owns its identity or group name (one read from a channel name).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) enum OwnedStream {
    All,
    User(Identity),
    Group(String),
}

#[cfg_attr(not(feature = "redis"), allow(dead_code))]
impl OwnedStream {
    pub fn as_stream(&self) -> Stream<'_> {
        match self {
            OwnedStream::All => Stream::All,
            OwnedStream::User(id) => Stream::User(id),
            OwnedStream::Group(g) => Stream::Group(g),
        }
    }
}

/// The name of a group's stream, on the wire and across servers: `g:<group>`.
pub(crate) fn group_stream(group: &str) -> String {
    Stream::Group(group).wire().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_stream_has_its_names_and_kind() {
        let alice = Identity::Str("alice".into());
        let cases = [
            (Stream::All, "b", "b", StreamKind::Broadcast),
            (Stream::User(&alice), "u:s:alice", "u", StreamKind::User),
            (
                Stream::Group("room:1"),
                "g:room:1",
                "g:room:1",
                StreamKind::Group,
            ),
        ];
        for (stream, key, wire, kind) in cases {
            assert_eq!(stream.key(), key);
            assert_eq!(stream.wire(), wire);
            assert_eq!(stream.kind(), kind);
            assert_eq!(stream.to_owned().as_stream(), stream);
        }
    }
}
