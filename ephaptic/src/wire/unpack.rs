//! Reading an argument value straight from its MessagePack bytes: a small serde `Deserializer`
//! for the values calls almost always carry (numbers, strings, booleans, nil, lists, maps and
//! the structs made of them), without `rmp_serde`'s per-value reader set-up.
//!
//! It gives up (with [`Fallback`]) on anything it does not handle exactly as `rmp_serde` does:
//! extension types, enums, strings that are not UTF-8, deep nesting, a value a visitor leaves
//! half read, or any error at all. The binder then decodes the value again with `rmp_serde`,
//! which either succeeds the same way or produces the `VALIDATION_ERROR` with its path; so this
//! reader only ever changes how fast a valid call binds, never what it binds to or how an
//! invalid one is reported.

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::msgpack::Fallback;

/// Nesting deeper than this is left to `rmp_serde` (which has its own limit).
const MAX_DEPTH: u16 = 64;

/// Decodes one whole value of type `T` from `bytes`, or gives up.
#[inline]
pub(crate) fn unpack<'de, T: de::Deserialize<'de>>(bytes: &'de [u8]) -> Result<T, Fallback> {
    let mut de = Unpack {
        buf: bytes,
        pos: 0,
        depth: 0,
    };
    let value = T::deserialize(&mut de)?;
    if de.pos == bytes.len() {
        Ok(value)
    } else {
        Err(Fallback)
    }
}

struct Unpack<'de> {
    buf: &'de [u8],
    pos: usize,
    depth: u16,
}

impl<'de> Unpack<'de> {
    #[inline]
    fn byte(&mut self) -> Result<u8, Fallback> {
        let b = *self.buf.get(self.pos).ok_or(Fallback)?;
        self.pos += 1;
        Ok(b)
    }

    #[inline]
    fn bytes(&mut self, n: usize) -> Result<&'de [u8], Fallback> {
        let end = self.pos.checked_add(n).ok_or(Fallback)?;
        let out = self.buf.get(self.pos..end).ok_or(Fallback)?;
        self.pos = end;
        Ok(out)
    }

    #[inline]
    fn array<const N: usize>(&mut self) -> Result<[u8; N], Fallback> {
        let b = self.bytes(N)?;
        let mut out = [0; N];
        out.copy_from_slice(b);
        Ok(out)
    }

    fn len(&mut self, n: usize) -> Result<usize, Fallback> {
        Ok(match n {
            1 => self.byte()? as usize,
            2 => u16::from_be_bytes(self.array()?) as usize,
            _ => u32::from_be_bytes(self.array()?) as usize,
        })
    }

    fn str<V: Visitor<'de>>(&mut self, len: usize, visitor: V) -> Result<V::Value, Fallback> {
        let bytes = self.bytes(len)?;
        match std::str::from_utf8(bytes) {
            Ok(s) => visitor.visit_borrowed_str(s),
            // `rmp_serde` has its own way with such strings: leave them to it.
            Err(_) => Err(Fallback),
        }
    }

    fn seq<V: Visitor<'de>>(&mut self, len: usize, visitor: V) -> Result<V::Value, Fallback> {
        // Every element takes at least one byte: a longer count is a lie.
        if len > self.buf.len() - self.pos {
            return Err(Fallback);
        }
        self.nest(|de| {
            let mut access = Elements { de, left: len };
            let value = visitor.visit_seq(&mut access)?;
            if access.left == 0 {
                Ok(value)
            } else {
                Err(Fallback)
            }
        })
    }

    fn map<V: Visitor<'de>>(&mut self, len: usize, visitor: V) -> Result<V::Value, Fallback> {
        if len > (self.buf.len() - self.pos) / 2 {
            return Err(Fallback);
        }
        self.nest(|de| {
            let mut access = Entries { de, left: len };
            let value = visitor.visit_map(&mut access)?;
            if access.left == 0 {
                Ok(value)
            } else {
                Err(Fallback)
            }
        })
    }

    fn nest<R>(&mut self, f: impl FnOnce(&mut Self) -> Result<R, Fallback>) -> Result<R, Fallback> {
        if self.depth >= MAX_DEPTH {
            return Err(Fallback);
        }
        self.depth += 1;
        let out = f(self);
        self.depth -= 1;
        out
    }
}

impl<'de> Deserializer<'de> for &mut Unpack<'de> {
    type Error = Fallback;

    // The visit each marker gets is the one `rmp_serde` makes for it.
    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Fallback> {
        let m = self.byte()?;
        match m {
            0x00..=0x7f => visitor.visit_u8(m),
            0xe0..=0xff => visitor.visit_i8(m as i8),
            0xc0 => visitor.visit_unit(),
            0xc2 => visitor.visit_bool(false),
            0xc3 => visitor.visit_bool(true),
            0xcc => visitor.visit_u8(self.byte()?),
            0xcd => visitor.visit_u16(u16::from_be_bytes(self.array()?)),
            0xce => visitor.visit_u32(u32::from_be_bytes(self.array()?)),
            0xcf => visitor.visit_u64(u64::from_be_bytes(self.array()?)),
            0xd0 => visitor.visit_i8(self.byte()? as i8),
            0xd1 => visitor.visit_i16(i16::from_be_bytes(self.array()?)),
            0xd2 => visitor.visit_i32(i32::from_be_bytes(self.array()?)),
            0xd3 => visitor.visit_i64(i64::from_be_bytes(self.array()?)),
            0xca => visitor.visit_f32(f32::from_be_bytes(self.array()?)),
            0xcb => visitor.visit_f64(f64::from_be_bytes(self.array()?)),
            0xa0..=0xbf => self.str((m & 0x1f) as usize, visitor),
            0xd9 => {
                let n = self.len(1)?;
                self.str(n, visitor)
            }
            0xda => {
                let n = self.len(2)?;
                self.str(n, visitor)
            }
            0xdb => {
                let n = self.len(4)?;
                self.str(n, visitor)
            }
            0xc4..=0xc6 => {
                let n = self.len(1 << (m - 0xc4))?;
                let bytes = self.bytes(n)?;
                visitor.visit_borrowed_bytes(bytes)
            }
            0x90..=0x9f => self.seq((m & 0x0f) as usize, visitor),
            0xdc => {
                let n = self.len(2)?;
                self.seq(n, visitor)
            }
            0xdd => {
                let n = self.len(4)?;
                self.seq(n, visitor)
            }
            0x80..=0x8f => self.map((m & 0x0f) as usize, visitor),
            0xde => {
                let n = self.len(2)?;
                self.map(n, visitor)
            }
            0xdf => {
                let n = self.len(4)?;
                self.map(n, visitor)
            }
            // Extension types and the reserved byte.
            _ => Err(Fallback),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Fallback> {
        if self.buf.get(self.pos) == Some(&0xc0) {
            self.pos += 1;
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Fallback> {
        // `rmp_serde` reads its extension wrapper specially.
        if name == "_ExtStruct" {
            return Err(Fallback);
        }
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Fallback> {
        Err(Fallback)
    }

    fn is_human_readable(&self) -> bool {
        true
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 u8 u16 u32 u64 f32 f64 char str string bytes byte_buf unit
        unit_struct seq tuple tuple_struct map struct identifier ignored_any
    }
}

struct Elements<'a, 'de> {
    de: &'a mut Unpack<'de>,
    left: usize,
}

impl<'de> SeqAccess<'de> for Elements<'_, 'de> {
    type Error = Fallback;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Fallback> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        seed.deserialize(&mut *self.de).map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.left)
    }
}

struct Entries<'a, 'de> {
    de: &'a mut Unpack<'de>,
    left: usize,
}

impl<'de> MapAccess<'de> for Entries<'_, 'de> {
    type Error = Fallback;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Fallback> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        seed.deserialize(&mut *self.de).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Fallback> {
        seed.deserialize(&mut *self.de)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.left)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::de::DeserializeOwned;
    use std::collections::{BTreeMap, HashMap};

    /// Decodes `value` both ways; they must agree wherever the fast path does not give up.
    fn agree<T>(value: &rmpv::Value) -> Option<T>
    where
        T: DeserializeOwned + PartialEq + std::fmt::Debug,
    {
        let mut bytes = Vec::new();
        rmpv::encode::write_value(&mut bytes, value).unwrap();
        let slow: Result<T, _> = rmp_serde::Deserializer::from_read_ref(&bytes[..])
            .with_human_readable()
            .pipe(|mut de| T::deserialize(&mut de));
        let fast = unpack::<T>(&bytes);
        if let Ok(fast) = &fast {
            assert_eq!(
                Some(fast),
                slow.as_ref().ok(),
                "the fast path bound {value} to something rmp_serde does not"
            );
        }
        fast.ok()
    }

    trait Pipe: Sized {
        fn pipe<R>(self, f: impl FnOnce(Self) -> R) -> R {
            f(self)
        }
    }
    impl<T> Pipe for T {}

    #[derive(Debug, PartialEq, serde::Deserialize)]
    struct Todo {
        title: String,
        done: bool,
        tags: Vec<String>,
        due: Option<u32>,
    }

    #[test]
    fn binds_what_calls_carry_exactly_as_rmp_serde_does() {
        use rmpv::Value as V;
        assert_eq!(agree::<i64>(&V::from(5)), Some(5));
        assert_eq!(agree::<i64>(&V::from(-40_000)), Some(-40_000));
        assert_eq!(agree::<u64>(&V::from(u64::MAX)), Some(u64::MAX));
        assert_eq!(agree::<f64>(&V::from(2)), Some(2.0));
        assert_eq!(agree::<f64>(&V::F64(0.5)), Some(0.5));
        assert_eq!(agree::<f32>(&V::F32(1.5)), Some(1.5));
        assert_eq!(agree::<String>(&V::from("héllo")), Some("héllo".into()));
        assert_eq!(agree::<Option<bool>>(&V::Nil), Some(None));
        assert_eq!(agree::<Option<bool>>(&V::from(true)), Some(Some(true)));
        assert_eq!(
            agree::<Vec<u8>>(&V::Array(vec![1.into(), 2.into()])),
            Some(vec![1, 2])
        );
        assert_eq!(agree::<()>(&V::Nil), Some(()));
        let todo = V::Map(vec![
            ("title".into(), "milk".into()),
            ("done".into(), false.into()),
            ("tags".into(), V::Array(vec!["a".into()])),
            ("due".into(), V::Nil),
        ]);
        assert_eq!(
            agree::<Todo>(&todo),
            Some(Todo {
                title: "milk".into(),
                done: false,
                tags: vec!["a".into()],
                due: None,
            })
        );
        let map = V::Map(vec![("a".into(), 1.into()), ("b".into(), 2.into())]);
        assert_eq!(
            agree::<BTreeMap<String, u8>>(&map).map(|m| m.len()),
            Some(2)
        );
        assert_eq!(agree::<HashMap<String, u8>>(&map).map(|m| m["b"]), Some(2));
    }

    #[test]
    fn gives_up_where_rmp_serde_decides() {
        use rmpv::Value as V;
        // Wrong types and out-of-range numbers: the thorough path reports them.
        assert_eq!(agree::<i64>(&V::from("5")), None);
        assert_eq!(agree::<u8>(&V::from(300)), None);
        assert_eq!(agree::<i64>(&V::F64(1.0)), None);
        // Enums, extension types, invalid UTF-8.
        #[derive(Debug, PartialEq, serde::Deserialize)]
        enum Level {
            Low,
        }
        assert_eq!(agree::<Level>(&V::from("Low")), None);
        assert_eq!(agree::<String>(&V::Ext(1, vec![0])), None);
        assert!(unpack::<String>(&[0xa2, 0xff, 0xfe]).is_err());
        // A struct missing a field.
        let partial = V::Map(vec![("title".into(), "x".into())]);
        assert_eq!(agree::<Todo>(&partial), None);
        // A list that claims more elements than there are bytes.
        assert!(unpack::<Vec<u8>>(&[0xdd, 0xff, 0xff, 0xff, 0xff]).is_err());
        // Deep nesting.
        let mut deep = vec![0x91u8; 200];
        deep.push(0xc0);
        assert!(unpack::<rmpv::Value>(&deep).is_err());
        // Trailing bytes.
        assert!(unpack::<u8>(&[0x01, 0x02]).is_err());
    }
}
