//! Writing a result as MessagePack straight into a buffer: a small serde `Serializer` that
//! writes exactly the bytes `rmp_serde` writes with the settings every frame uses (structs as
//! maps with named fields, human-readable), without its writer and configuration layers.
//!
//! It gives up (with [`Fallback`]) where `rmp_serde` does something of its own: sequences and maps
//! of unknown length (which it buffers), its extension-type wrapper, and any error a value
//! reports. The caller then truncates what was written and encodes the value again with
//! `rmp_serde`, so this writer only changes how fast a reply is encoded, never its bytes.

use serde::ser::{self, Serialize};

use super::msgpack::Fallback;

/// Appends `value` to `out`, or gives up (leaving a partial value in `out` for the caller to
/// cut off).
#[inline]
pub(crate) fn pack<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) -> Result<(), Fallback> {
    value.serialize(&mut Pack { out })
}

struct Pack<'a> {
    out: &'a mut Vec<u8>,
}

impl Pack<'_> {
    fn uint(&mut self, v: u64) {
        super::msgpack::put_uint(self.out, v);
    }

    fn sint(&mut self, v: i64) {
        if v >= 0 {
            self.uint(v as u64);
        } else if v >= -32 {
            self.out.push(v as u8);
        } else if v >= -128 {
            self.out.extend_from_slice(&[0xd0, v as u8]);
        } else if v >= -32768 {
            self.out.push(0xd1);
            self.out.extend_from_slice(&(v as i16).to_be_bytes());
        } else if v >= -2_147_483_648 {
            self.out.push(0xd2);
            self.out.extend_from_slice(&(v as i32).to_be_bytes());
        } else {
            self.out.push(0xd3);
            self.out.extend_from_slice(&v.to_be_bytes());
        }
    }

    /// A 16-bit or 32-bit length after its marker; longer is left to `rmp_serde`.
    fn wide_len(&mut self, len: usize, m16: u8, m32: u8) -> Result<(), Fallback> {
        if len < 65536 {
            self.out.push(m16);
            self.out.extend_from_slice(&(len as u16).to_be_bytes());
        } else if len <= u32::MAX as usize {
            self.out.push(m32);
            self.out.extend_from_slice(&(len as u32).to_be_bytes());
        } else {
            return Err(Fallback);
        }
        Ok(())
    }

    fn array(&mut self, len: usize) -> Result<(), Fallback> {
        if len < 16 {
            self.out.push(0x90 | len as u8);
            return Ok(());
        }
        self.wide_len(len, 0xdc, 0xdd)
    }

    fn map(&mut self, len: usize) -> Result<(), Fallback> {
        if len < 16 {
            self.out.push(0x80 | len as u8);
            return Ok(());
        }
        self.wide_len(len, 0xde, 0xdf)
    }

    fn str(&mut self, s: &str) -> Result<(), Fallback> {
        if s.len() > u32::MAX as usize {
            return Err(Fallback);
        }
        super::msgpack::put_str(self.out, s);
        Ok(())
    }

    /// The head of an enum variant with data: `{variant: ...}`, as `rmp_serde` writes it.
    fn variant(&mut self, variant: &str) -> Result<(), Fallback> {
        self.out.push(0x81);
        self.str(variant)
    }

    fn bin(&mut self, b: &[u8]) -> Result<(), Fallback> {
        let len = b.len();
        if len < 256 {
            self.out.extend_from_slice(&[0xc4, len as u8]);
        } else {
            self.wide_len(len, 0xc5, 0xc6)?;
        }
        self.out.extend_from_slice(b);
        Ok(())
    }
}

// Every integer is written in its smallest form, as `rmp_serde` does.
macro_rules! ints {
    ($($method:ident($ty:ty) => $write:ident),*) => {$(
        fn $method(self, v: $ty) -> Result<(), Fallback> {
            self.$write(v.into());
            Ok(())
        }
    )*};
}

impl<'a, 'b> ser::Serializer for &'a mut Pack<'b> {
    type Ok = ();
    type Error = Fallback;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Self;
    type SerializeStruct = Self;
    type SerializeStructVariant = Self;

    fn is_human_readable(&self) -> bool {
        true
    }

    fn serialize_bool(self, v: bool) -> Result<(), Fallback> {
        self.out.push(if v { 0xc3 } else { 0xc2 });
        Ok(())
    }

    ints! {
        serialize_i8(i8) => sint,
        serialize_i16(i16) => sint,
        serialize_i32(i32) => sint,
        serialize_i64(i64) => sint,
        serialize_u8(u8) => uint,
        serialize_u16(u16) => uint,
        serialize_u32(u32) => uint,
        serialize_u64(u64) => uint
    }

    fn serialize_i128(self, v: i128) -> Result<(), Fallback> {
        self.bin(&v.to_be_bytes())
    }

    fn serialize_u128(self, v: u128) -> Result<(), Fallback> {
        self.bin(&v.to_be_bytes())
    }

    fn serialize_f32(self, v: f32) -> Result<(), Fallback> {
        self.out.push(0xca);
        self.out.extend_from_slice(&v.to_be_bytes());
        Ok(())
    }

    fn serialize_f64(self, v: f64) -> Result<(), Fallback> {
        self.out.push(0xcb);
        self.out.extend_from_slice(&v.to_be_bytes());
        Ok(())
    }

    fn serialize_char(self, v: char) -> Result<(), Fallback> {
        self.str(v.encode_utf8(&mut [0; 4]))
    }

    fn serialize_str(self, v: &str) -> Result<(), Fallback> {
        self.str(v)
    }

    fn serialize_bytes(self, v: &[u8]) -> Result<(), Fallback> {
        self.bin(v)
    }

    fn serialize_none(self) -> Result<(), Fallback> {
        self.out.push(0xc0);
        Ok(())
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Fallback> {
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result<(), Fallback> {
        self.out.push(0xc0);
        Ok(())
    }

    fn serialize_unit_struct(self, _: &'static str) -> Result<(), Fallback> {
        // `rmp_serde` writes a unit struct as an empty array.
        self.out.push(0x90);
        Ok(())
    }

    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<(), Fallback> {
        self.str(variant)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result<(), Fallback> {
        // `rmp_serde`'s extension-type wrapper.
        if name == "_ExtStruct" {
            return Err(Fallback);
        }
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), Fallback> {
        self.variant(variant)?;
        value.serialize(self)
    }

    fn serialize_seq(self, len: Option<usize>) -> Result<Self, Fallback> {
        self.array(len.ok_or(Fallback)?)?;
        Ok(self)
    }

    fn serialize_tuple(self, len: usize) -> Result<Self, Fallback> {
        self.array(len)?;
        Ok(self)
    }

    fn serialize_tuple_struct(self, _: &'static str, len: usize) -> Result<Self, Fallback> {
        self.array(len)?;
        Ok(self)
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self, Fallback> {
        self.variant(variant)?;
        self.array(len)?;
        Ok(self)
    }

    fn serialize_map(self, len: Option<usize>) -> Result<Self, Fallback> {
        self.map(len.ok_or(Fallback)?)?;
        Ok(self)
    }

    fn serialize_struct(self, _: &'static str, len: usize) -> Result<Self, Fallback> {
        self.map(len)?;
        Ok(self)
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self, Fallback> {
        self.variant(variant)?;
        self.map(len)?;
        Ok(self)
    }
}

// The parts of lists, tuples and structs, each written as it comes after the header.
macro_rules! parts {
    ($($trait:ident :: $method:ident),*) => {$(
        impl ser::$trait for &mut Pack<'_> {
            type Ok = ();
            type Error = Fallback;

            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Fallback> {
                value.serialize(&mut **self)
            }

            fn end(self) -> Result<(), Fallback> {
                Ok(())
            }
        }
    )*};
}

macro_rules! fields {
    ($($trait:ident),*) => {$(
        impl ser::$trait for &mut Pack<'_> {
            type Ok = ();
            type Error = Fallback;

            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                key: &'static str,
                value: &T,
            ) -> Result<(), Fallback> {
                self.str(key)?;
                value.serialize(&mut **self)
            }

            fn end(self) -> Result<(), Fallback> {
                Ok(())
            }
        }
    )*};
}

parts!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);
fields!(SerializeStruct, SerializeStructVariant);

impl ser::SerializeMap for &mut Pack<'_> {
    type Ok = ();
    type Error = Fallback;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Fallback> {
        key.serialize(&mut **self)
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Fallback> {
        value.serialize(&mut **self)
    }

    fn end(self) -> Result<(), Fallback> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// The bytes `rmp_serde` writes with the settings frames use.
    fn reference<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
        let mut out = Vec::new();
        let mut ser = rmp_serde::Serializer::new(&mut out)
            .with_struct_map()
            .with_human_readable();
        value.serialize(&mut ser).unwrap();
        out
    }

    /// Encodes `value` both ways: the fast path must write the same bytes, or give up.
    fn same<T: Serialize + ?Sized>(value: &T) -> bool {
        let mut fast = vec![0xee];
        match pack(&mut fast, value) {
            Ok(()) => {
                assert_eq!(fast[1..], reference(value)[..]);
                true
            }
            Err(Fallback) => false,
        }
    }

    #[derive(serde::Serialize)]
    struct Todo {
        id: u64,
        title: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        due: Option<u32>,
        tags: Vec<&'static str>,
        ratio: f64,
    }

    #[derive(serde::Serialize)]
    struct Unit;

    #[derive(serde::Serialize)]
    struct Meters(f32);

    #[derive(serde::Serialize)]
    enum Shape {
        Dot,
        Circle(u8),
        Pair(u8, i8),
        Rect { w: u16, h: u16 },
    }

    #[test]
    fn writes_the_bytes_rmp_serde_writes() {
        for n in [
            0i64,
            1,
            127,
            128,
            255,
            256,
            65535,
            65536,
            u32::MAX as i64,
            u32::MAX as i64 + 1,
            i64::MAX,
            -1,
            -32,
            -33,
            -128,
            -129,
            -32768,
            -32769,
            i32::MIN as i64,
            i32::MIN as i64 - 1,
            i64::MIN,
        ] {
            assert!(same(&n), "{n}");
        }
        assert!(same(&u64::MAX));
        assert!(same(&(7u8, -7i8, 300u16, -300i16, 70_000u32, -70_000i32)));
        assert!(same(&1.5f32) && same(&-0.25f64));
        assert!(same(&true) && same(&'é') && same(&()));
        assert!(same("") && same(&"x".repeat(31)) && same(&"x".repeat(32)));
        assert!(same(&"y".repeat(300)) && same(&"z".repeat(70_000)));
        assert!(same(&Some(3u8)) && same(&None::<u8>));
        assert!(same(&serde_bytes_like(&[1, 2, 3])));
        assert!(same(&(0..20).collect::<Vec<u32>>()));
        let map: BTreeMap<String, i32> = (0..17).map(|i| (format!("k{i}"), i)).collect();
        assert!(same(&map));
        assert!(same(&Todo {
            id: 9,
            title: "milk".into(),
            due: None,
            tags: vec!["a", "b"],
            ratio: 0.5,
        }));
        assert!(same(&Unit) && same(&Meters(2.5)));
        for s in [
            Shape::Dot,
            Shape::Circle(3),
            Shape::Pair(1, -1),
            Shape::Rect { w: 2, h: 300 },
        ] {
            assert!(same(&s));
        }
        assert!(same(&(1i128 << 100)) && same(&u128::MAX));
        assert!(same(&rmpv::Value::from(vec![rmpv::Value::from("v")])));
    }

    fn serde_bytes_like(b: &[u8]) -> impl Serialize + '_ {
        struct Bytes<'a>(&'a [u8]);
        impl Serialize for Bytes<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(self.0)
            }
        }
        Bytes(b)
    }

    #[test]
    fn gives_up_on_unknown_lengths_and_errors() {
        struct Unsized;
        impl Serialize for Unsized {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeSeq;
                let mut seq = s.serialize_seq(None)?;
                seq.serialize_element(&1u8)?;
                seq.end()
            }
        }
        assert!(!same(&Unsized));
        struct Fails;
        impl Serialize for Fails {
            fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
                Err(serde::ser::Error::custom("no"))
            }
        }
        assert!(pack(&mut Vec::new(), &Fails).is_err());
    }
}
