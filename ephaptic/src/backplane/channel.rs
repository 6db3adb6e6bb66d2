//! What travels through Redis: channel names and message bodies (docs/PROTOCOL.md section 6).
//!
//! Our channels, one per audience, so that a server receives only what it has listeners for:
//!
//! | channel | carries | a server subscribes |
//! |---|---|---|
//! | `ephaptic:all` | events to everyone | always |
//! | `ephaptic:u:<identity key>` | `to(identity)` events | while it holds a connection of that identity |
//! | `ephaptic:g:<group>` | `group(name)` events and channels sent to a group | while it holds a member |
//! | `ephaptic:probe:<node>` | its own liveness probes | always |
//! | `ephaptic:broadcast` | the reference's envelope, in compatibility mode | always, in that mode |
//!
//! Our message body is `E`, a version byte (1), the length of the sender's node id (one byte),
//! the node id, then the event frame exactly as clients receive it. A server skips what it sent
//! itself (it delivered that locally already), and what it cannot read. Version 2 is an event
//! of a stream as Redis numbered it; version 3 says that a stream's events were lost on their
//! way to Redis (servers before it skip it, as anything they cannot read); version 4 ends the
//! sessions of a stream's listeners.

use bytes::Bytes;

use crate::identity::Identity;
use crate::session::{OwnedStream, Stream};

pub(crate) const ALL: &str = "ephaptic:all";
pub(crate) const LEGACY: &str = "ephaptic:broadcast";
const USER: &str = "ephaptic:u:";
const GROUP: &str = "ephaptic:g:";
const PROBE: &str = "ephaptic:probe:";

const MAGIC: u8 = b'E';
const VERSION: u8 = 1;

/// The channel a stream's events travel on.
pub(crate) fn of(stream: Stream<'_>) -> String {
    match stream {
        Stream::All => ALL.to_owned(),
        Stream::User(identity) => format!("{USER}{}", identity.key()),
        Stream::Group(name) => format!("{GROUP}{name}"),
    }
}

pub(crate) fn probe(node: &str) -> String {
    format!("{PROBE}{node}")
}

/// On a Redis Cluster, the shard channel (`SSUBSCRIBE`/`SPUBLISH`) that carries `channel`: its
/// stream's key in braces (`ephaptic:{g:room}`, `ephaptic:{b}` for everyone's), the hash tag of
/// the stream's kept events (`history::keys`), so that the append script, which publishes
/// while it writes them, touches one slot.
pub(crate) fn sharded(channel: &str) -> String {
    let rest = if channel == ALL {
        crate::session::ALL_WIRE
    } else {
        channel.strip_prefix("ephaptic:").unwrap_or(channel)
    };
    format!("ephaptic:{{{rest}}}")
}

/// The channel a shard channel carries (the reverse of [`sharded`]); `None` when not ours.
pub(crate) fn unsharded(shard: &[u8]) -> Option<String> {
    let shard = std::str::from_utf8(shard).ok()?;
    let inner = shard.strip_prefix("ephaptic:{")?.strip_suffix('}')?;
    Some(if inner == crate::session::ALL_WIRE {
        ALL.to_owned()
    } else {
        format!("ephaptic:{inner}")
    })
}

/// What a channel a message arrived on carries: a stream's events, this server's probes, or
/// the reference's envelope.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Channel {
    Stream(OwnedStream),
    Probe,
    Legacy,
}

/// Reads a channel's name (`None` for one that is not ours).
pub(crate) fn parse(channel: &[u8]) -> Option<Channel> {
    let channel = std::str::from_utf8(channel).ok()?;
    if channel == ALL {
        Some(Channel::Stream(OwnedStream::All))
    } else if channel == LEGACY {
        Some(Channel::Legacy)
    } else if let Some(key) = channel.strip_prefix(USER) {
        Identity::from_key(key).map(|id| Channel::Stream(OwnedStream::User(id)))
    } else if let Some(name) = channel.strip_prefix(GROUP) {
        Some(Channel::Stream(OwnedStream::Group(name.to_owned())))
    } else if channel.starts_with(PROBE) {
        Some(Channel::Probe)
    } else {
        None
    }
}

/// Our message body: the sender's node id, then the frame.
pub(crate) fn wrap(node: &str, frame: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(3 + node.len() + frame.len());
    body.extend_from_slice(&[MAGIC, VERSION, node.len() as u8]);
    body.extend_from_slice(node.as_bytes());
    body.extend_from_slice(frame);
    body
}

/// Version 2: an event of a stream, as the append script publishes it: the head
/// ([`positioned_head`]), one byte giving the epoch's length, the epoch, the offset in decimal
/// digits, `:`, then the frame without its position. Every server delivers these, its own
/// included: Redis numbered them.
const POSITIONED: u8 = 2;

/// The start of a positioned message, which the append script completes.
pub(crate) fn positioned_head(node: &str) -> Vec<u8> {
    let mut head = Vec::with_capacity(3 + node.len());
    head.extend_from_slice(&[MAGIC, POSITIONED, node.len() as u8]);
    head.extend_from_slice(node.as_bytes());
    head
}

/// A positioned message's epoch, offset and frame; `None` for anything else.
pub(crate) fn unwrap_positioned(body: &Bytes) -> Option<(String, u64, Bytes)> {
    let [MAGIC, POSITIONED, len, ..] = body[..] else {
        return None;
    };
    let mut at = 3 + len as usize;
    let elen = *body.get(at)? as usize;
    at += 1;
    let epoch = std::str::from_utf8(body.get(at..at + elen)?)
        .ok()?
        .to_owned();
    at += elen;
    let digits = body.get(at..)?.iter().position(|b| *b == b':')?;
    let seq = std::str::from_utf8(&body[at..at + digits])
        .ok()?
        .parse()
        .ok()?;
    Some((epoch, seq, body.slice(at + digits + 1..)))
}

/// Version 3: events of the channel's stream (of every stream, with `everything`) never
/// reached Redis from the sender (its publish queue was full, or Redis refused the batch):
/// the head, then one byte, 1 for every stream, 0 for the channel's. A server that receives it
/// tells its clients of that stream to refetch (`resync`).
const LOST: u8 = 3;

/// A notice that events were lost on their way to Redis.
pub(crate) fn lost(node: &str, everything: bool) -> Vec<u8> {
    let mut body = Vec::with_capacity(4 + node.len());
    body.extend_from_slice(&[MAGIC, LOST, node.len() as u8]);
    body.extend_from_slice(node.as_bytes());
    body.push(u8::from(everything));
    body
}

/// Whether a notice of lost events, from another server than `node`, stands for every stream;
/// `None` for anything else (its own notices included).
pub(crate) fn unwrap_lost(node: &str, body: &[u8]) -> Option<bool> {
    let [MAGIC, LOST, len, ..] = body[..] else {
        return None;
    };
    let start = 3 + len as usize;
    let origin = body.get(3..start)?;
    if origin == node.as_bytes() {
        return None;
    }
    match body.get(start..)? {
        [flag] => Some(*flag == 1),
        _ => None,
    }
}

/// Version 4: end the sessions of a stream's listeners (`ephaptic::disconnect`): the head, the
/// stream's key's length (two bytes, big-endian), its key ([`Stream::key`]), then the close
/// reason. Published on the stream's channel; in compatibility mode a user's goes on
/// [`ALL`], since its own channel has no subscriber there. Servers before it skip it.
const END: u8 = 4;

/// A request to end the sessions of `stream`'s listeners.
pub(crate) fn end(node: &str, stream: Stream<'_>, reason: &str) -> Vec<u8> {
    let key = stream.key();
    let len = u16::try_from(key.len()).unwrap_or(u16::MAX);
    let mut body = Vec::with_capacity(5 + node.len() + key.len() + reason.len());
    body.extend_from_slice(&[MAGIC, END, node.len() as u8]);
    body.extend_from_slice(node.as_bytes());
    body.extend_from_slice(&len.to_be_bytes());
    body.extend_from_slice(&key.as_bytes()[..usize::from(len)]);
    body.extend_from_slice(reason.as_bytes());
    body
}

/// The stream and reason of a request to end sessions from another server than `node`;
/// `None` for anything else (its own included).
pub(crate) fn unwrap_end(node: &str, body: &[u8]) -> Option<(OwnedStream, String)> {
    let [MAGIC, END, len, ..] = body[..] else {
        return None;
    };
    let start = 3 + len as usize;
    if body.get(3..start)? == node.as_bytes() {
        return None;
    }
    let klen = u16::from_be_bytes(body.get(start..start + 2)?.try_into().ok()?) as usize;
    let key = std::str::from_utf8(body.get(start + 2..start + 2 + klen)?).ok()?;
    let reason = std::str::from_utf8(body.get(start + 2 + klen..)?).ok()?;
    let stream = if key == crate::session::ALL_WIRE {
        OwnedStream::All
    } else if let Some(id) = key.strip_prefix("u:") {
        OwnedStream::User(Identity::from_key(id)?)
    } else {
        OwnedStream::Group(key.strip_prefix("g:")?.to_owned())
    };
    Some((stream, reason.to_owned()))
}

/// The frame of a message `node` did not send itself; `None` for its own and for what is not
/// ours (another version, garbage).
pub(crate) fn unwrap(node: &str, body: Bytes) -> Option<Bytes> {
    let [MAGIC, VERSION, len, ..] = body[..] else {
        return None;
    };
    let start = 3 + len as usize;
    let origin = body.get(3..start)?;
    (origin != node.as_bytes() && body.len() > start).then(|| body.slice(start..))
}

/// The reference's envelope: `{target_users: [keys], message: <bin frame>, origin}`. The
/// reference ignores `origin`; servers that write it (ours, the TypeScript one) skip their own.
pub(crate) fn legacy_envelope(node: &str, identities: &[Identity], frame: &[u8]) -> Vec<u8> {
    use rmpv::Value;
    let envelope = Value::Map(vec![
        (
            Value::from("target_users"),
            Value::Array(identities.iter().map(|i| Value::from(i.key())).collect()),
        ),
        (Value::from("message"), Value::Binary(frame.to_vec())),
        (Value::from("origin"), Value::from(node)),
    ]);
    let mut out = Vec::with_capacity(frame.len() + 64);
    rmpv::encode::write_value(&mut out, &envelope).expect("writing to a Vec cannot fail");
    out
}

/// A reference envelope from another server: its target identities and the frame. `None` for
/// our own (by `origin`) and for what does not read as one.
pub(crate) fn read_legacy(node: &str, body: &[u8]) -> Option<(Vec<Identity>, Bytes)> {
    use rmpv::Value;
    let value = rmpv::decode::read_value(&mut &body[..]).ok()?;
    let entries = value.as_map()?;
    let field = |name: &str| {
        entries
            .iter()
            .find(|(k, _)| k.as_str() == Some(name))
            .map(|(_, v)| v)
    };
    if field("origin").and_then(Value::as_str) == Some(node) {
        return None;
    }
    let users = field("target_users")?
        .as_array()?
        .iter()
        .filter_map(|k| k.as_str().and_then(Identity::from_key))
        .collect();
    let frame = match field("message")? {
        Value::Binary(b) => Bytes::from(b.clone()),
        // The reference's encoder writes bytes as bin; be lenient with a str of the same bytes.
        Value::String(s) => Bytes::copy_from_slice(s.as_bytes()),
        _ => return None,
    };
    Some((users, frame))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_channels_share_their_streams_hash_tag_and_read_back() {
        let id = Identity::from("alice");
        for (stream, tag) in [
            (Stream::All, "b".to_owned()),
            (Stream::User(&id), format!("u:{}", id.key())),
            (Stream::Group("a}b{c"), "g:a}b{c".to_owned()),
        ] {
            let logical = of(stream);
            let shard = sharded(&logical);
            assert_eq!(shard, format!("ephaptic:{{{tag}}}"));
            // The same hash tag as the stream's kept events: one slot for the append script.
            let (meta, _) = super::super::history::keys(&stream.key());
            let tag_of = |k: &str| {
                let open = k.find('{').unwrap();
                let close = open + k[open..].find('}').unwrap();
                k[open + 1..close].to_owned()
            };
            assert_eq!(tag_of(&shard), tag_of(&meta), "{logical}");
            assert_eq!(
                unsharded(shard.as_bytes()).as_deref(),
                Some(logical.as_str())
            );
        }
        let p = probe("rs-1");
        assert_eq!(unsharded(sharded(&p).as_bytes()), Some(p));
        assert_eq!(unsharded(b"other:{x}"), None);
    }

    #[test]
    fn a_server_skips_its_own_messages_and_reads_the_others() {
        let body = Bytes::from(wrap("node-a", b"\x83frame"));
        assert_eq!(
            unwrap("node-b", body.clone()).as_deref(),
            Some(&b"\x83frame"[..])
        );
        assert_eq!(unwrap("node-a", body), None);
        assert_eq!(unwrap("node-b", Bytes::from_static(b"junk")), None);
        assert_eq!(unwrap("node-b", Bytes::from_static(b"E\x02\x00x")), None);
    }

    #[test]
    fn a_notice_of_lost_events_is_read_by_the_others_and_by_nothing_else() {
        assert_eq!(unwrap_lost("node-b", &lost("node-a", false)), Some(false));
        assert_eq!(unwrap_lost("node-b", &lost("node-a", true)), Some(true));
        assert_eq!(unwrap_lost("node-a", &lost("node-a", true)), None);
        // Not an event for a server that predates it, nor an event here.
        assert_eq!(unwrap("node-b", Bytes::from(lost("node-a", false))), None);
        assert_eq!(unwrap_positioned(&Bytes::from(lost("node-a", false))), None);
        assert_eq!(unwrap_lost("node-b", &wrap("node-a", b"\x01")), None);
        assert_eq!(unwrap_lost("node-b", b"E\x03\x06node-a"), None, "no flag");
    }

    #[test]
    fn a_request_to_end_sessions_names_its_stream_and_reason() {
        let alice = Identity::from("alice");
        for stream in [Stream::All, Stream::User(&alice), Stream::Group("room:1")] {
            let body = end("node-a", stream, "revoked");
            let (read, reason) = unwrap_end("node-b", &body).unwrap();
            assert_eq!(read.as_stream(), stream);
            assert_eq!(reason, "revoked");
            assert_eq!(unwrap_end("node-a", &body), None, "its own");
            // Not an event, nor a notice of loss, for a server that predates it.
            assert_eq!(unwrap("node-b", Bytes::from(body.clone())), None);
            assert_eq!(unwrap_lost("node-b", &body), None);
            assert_eq!(unwrap_positioned(&Bytes::from(body)), None);
        }
        assert_eq!(
            unwrap_end("node-b", b"E\x04\x01x\x00\x09u:s:al"),
            None,
            "cut short"
        );
        assert_eq!(unwrap_end("node-b", &wrap("node-a", b"\x01")), None);
    }

    #[test]
    fn channels_name_their_stream_and_read_back() {
        let (seven, text_seven) = (Identity::from(7), Identity::from("7"));
        for stream in [
            Stream::All,
            Stream::User(&seven),
            Stream::User(&text_seven),
            Stream::Group("room:1"),
        ] {
            assert_eq!(
                parse(of(stream).as_bytes()),
                Some(Channel::Stream(stream.to_owned()))
            );
        }
        assert_eq!(of(Stream::All), ALL);
        assert_eq!(of(Stream::Group("room:1")), "ephaptic:g:room:1");
        assert_eq!(parse(probe("n").as_bytes()), Some(Channel::Probe));
        assert_eq!(parse(LEGACY.as_bytes()), Some(Channel::Legacy));
        assert_eq!(parse(b"other"), None);
    }

    #[test]
    fn the_reference_envelope_round_trips_and_skips_its_origin() {
        let ids = [Identity::from("alice"), Identity::from(7)];
        let body = legacy_envelope("rs-1", &ids, b"\x83frame");
        let (users, frame) = read_legacy("rs-2", &body).unwrap();
        assert_eq!(users, ids);
        assert_eq!(&frame[..], b"\x83frame");
        assert!(read_legacy("rs-1", &body).is_none());
        // What the reference writes: no origin, integer keys as `i:`.
        let reference = rmpv::Value::Map(vec![
            (
                "target_users".into(),
                rmpv::Value::Array(vec!["i:7".into()]),
            ),
            ("message".into(), rmpv::Value::Binary(b"f".to_vec())),
        ]);
        let mut body = Vec::new();
        rmpv::encode::write_value(&mut body, &reference).unwrap();
        let (users, _) = read_legacy("rs-1", &body).unwrap();
        assert_eq!(users, [Identity::from(7)]);
    }
}
