//! MessagePack pieces every reader and writer of the wire shares: the `nil` byte, the string
//! writer, and the "not on the fast path" signal of the fast reader and writer.

use bytes::BufMut;

/// The encoded MessagePack `nil`, used where a frame has no `id`.
pub(crate) const NIL: &[u8] = &[0xc0];

/// How deeply nested a value from a client may be where the server decodes it recursively
/// (`rmp_serde` and `rmpv`, for arguments off the fast path, validation issues and `auth`).
/// Their own limit is 1,024 levels, and decoding an argument of a recursive type (a dynamic
/// `Value`) that deep overflowed a 2 MiB worker stack, which aborts the whole server: a
/// fuzz finding (`fuzz/tests.rs`). Real payloads are nowhere near this deep.
pub(crate) const MAX_NESTING: usize = 128;

/// A MessagePack string (its smallest header, then the bytes), into a `BytesMut` or a `Vec`.
pub(crate) fn put_str(buf: &mut impl BufMut, s: &str) {
    let len = s.len();
    if len < 32 {
        buf.put_u8(0xa0 | len as u8);
    } else if len < 256 {
        buf.put_u8(0xd9);
        buf.put_u8(len as u8);
    } else if len <= u16::MAX as usize {
        buf.put_u8(0xda);
        buf.put_u16(len as u16);
    } else {
        buf.put_u8(0xdb);
        buf.put_u32(len as u32);
    }
    buf.put_slice(s.as_bytes());
}

/// An unsigned integer in its shortest MessagePack form (the fast value writer's and the
/// position keys' of event frames).
#[inline]
pub(crate) fn put_uint(buf: &mut impl BufMut, n: u64) {
    if n < 128 {
        buf.put_u8(n as u8);
    } else if n <= u8::MAX as u64 {
        buf.put_u8(0xcc);
        buf.put_u8(n as u8);
    } else if n <= u16::MAX as u64 {
        buf.put_u8(0xcd);
        buf.put_u16(n as u16);
    } else if n <= u32::MAX as u64 {
        buf.put_u8(0xce);
        buf.put_u32(n as u32);
    } else {
        buf.put_u8(0xcf);
        buf.put_u64(n);
    }
}

/// Whether an encoded value is a map (its first byte is a map header).
pub(crate) fn is_map(encoded: &[u8]) -> bool {
    matches!(encoded.first(), Some(0x80..=0x8f | 0xde | 0xdf))
}

/// The text of an encoded value that is exactly one UTF-8 string (nothing before or after it);
/// `None` for anything else. (A frame's optional keys that must be strings: an idempotency
/// key, a `traceparent`.)
pub(crate) fn whole_str(encoded: &[u8]) -> Option<&str> {
    let mut bytes = encoded;
    match rmp::decode::read_str_len(&mut bytes) {
        Ok(len) if len as usize == bytes.len() => std::str::from_utf8(bytes).ok(),
        _ => None,
    }
}

/// "Not on the fast path": the caller encodes (or, for [`unpack`](fn@super::unpack), decodes)
/// the value again with `rmp_serde`.
#[derive(Debug)]
pub(crate) struct Fallback;

impl std::fmt::Display for Fallback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("left to rmp_serde")
    }
}

impl std::error::Error for Fallback {}

impl serde::ser::Error for Fallback {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        Fallback
    }
}

impl serde::de::Error for Fallback {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        Fallback
    }
}
