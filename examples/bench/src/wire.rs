//! Just enough MessagePack for the load generator, written by hand so the client spends as
//! little CPU per frame as possible (it shares the machine with the server it measures).

/// `{"type": "rpc", "id": id, "name": "add", "args": [a, b]}`.
pub fn rpc_add(buf: &mut Vec<u8>, id: u64, a: i64, b: i64) {
    rpc_into(buf, id, "add", &[Arg::Sint(a), Arg::Sint(b)], false);
}

/// `{"type": "rpc", "id": id, "name": "shout", "args": [message]}`.
pub fn rpc_shout(buf: &mut Vec<u8>, id: u64, message: &str) {
    rpc_into(buf, id, "shout", &[Arg::Str(message)], false);
}

/// `add` as the Python client writes it: `{"type": "rpc", "id": id, "name": "add", "args":
/// [a, b], "kwargs": {}}` (it always sends `kwargs`, empty when every argument is positional).
pub fn rpc_add_kwargs(buf: &mut Vec<u8>, id: u64, a: i64, b: i64) {
    rpc_into(buf, id, "add", &[Arg::Sint(a), Arg::Sint(b)], true);
}

/// `shout` as the Python client writes it (`kwargs` present, empty).
pub fn rpc_shout_kwargs(buf: &mut Vec<u8>, id: u64, message: &str) {
    rpc_into(buf, id, "shout", &[Arg::Str(message)], true);
}

/// `{"type": "init", "auth": token}`.
pub fn init(token: &str) -> Vec<u8> {
    let mut buf = Vec::new();
    rmp::encode::write_map_len(&mut buf, 2).unwrap();
    rmp::encode::write_str(&mut buf, "type").unwrap();
    rmp::encode::write_str(&mut buf, "init").unwrap();
    rmp::encode::write_str(&mut buf, "auth").unwrap();
    rmp::encode::write_str(&mut buf, token).unwrap();
    buf
}

/// What a server frame was, as far as the load generator cares.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// `{id, result}` with an integer id and (when it is one) an integer result.
    Result { id: u64, value: Option<i64> },
    /// `{id, error}`.
    Error { id: Option<u64> },
    /// `{type: "event", ..., payload: {kwargs: {message}}}`: the message string.
    Event { message: Option<&'a str> },
    /// A keep-alive the client must answer (engine.io's `2`; see `proto::pong`).
    Ping,
    /// A handshake's answer (socket.io's namespace `40{...}`).
    Connected,
    /// Anything else.
    Other,
}

pub fn classify(frame: &[u8]) -> Frame<'_> {
    let mut r = Reader { b: frame, p: 0 };
    classify_inner(&mut r).unwrap_or(Frame::Other)
}

fn classify_inner<'a>(r: &mut Reader<'a>) -> Option<Frame<'a>> {
    let n = r.map_len()?;
    let mut id = None;
    let mut result = None;
    let mut has_result = false;
    let mut error = false;
    let mut is_event = false;
    let mut message = None;
    for _ in 0..n {
        let key = r.str()?;
        match key {
            b"id" => id = r.uint(),
            b"result" => {
                has_result = true;
                result = r.int();
            }
            b"error" => {
                error = true;
                r.skip()?;
            }
            b"type" => is_event = r.str() == Some(b"event"),
            b"payload" => message = payload_message(r),
            _ => r.skip()?,
        }
    }
    Some(if error {
        Frame::Error { id }
    } else if has_result {
        Frame::Result {
            id: id?,
            value: result,
        }
    } else if is_event {
        Frame::Event { message }
    } else {
        Frame::Other
    })
}

/// `payload.kwargs.message`, consuming the whole payload value.
fn payload_message<'a>(r: &mut Reader<'a>) -> Option<&'a str> {
    let Some(n) = r.map_len() else {
        r.skip()?;
        return None;
    };
    let mut message = None;
    for _ in 0..n {
        let key = r.str()?;
        if key == b"kwargs"
            && let Some(m) = r.map_len()
        {
            for _ in 0..m {
                let k = r.str()?;
                if k == b"message" {
                    message = r.str().and_then(|s| std::str::from_utf8(s).ok());
                } else {
                    r.skip()?;
                }
            }
        } else {
            r.skip()?;
        }
    }
    message
}

struct Reader<'a> {
    b: &'a [u8],
    p: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Option<u8> {
        let b = *self.b.get(self.p)?;
        self.p += 1;
        Some(b)
    }

    fn be(&mut self, n: usize) -> Option<u64> {
        let s = self.b.get(self.p..self.p + n)?;
        self.p += n;
        Some(s.iter().fold(0u64, |a, b| (a << 8) | u64::from(*b)))
    }

    /// A map header; on anything else nothing is consumed.
    fn map_len(&mut self) -> Option<usize> {
        let n = match *self.b.get(self.p)? {
            b @ 0x80..=0x8f => {
                self.p += 1;
                u64::from(b & 0x0f)
            }
            0xde => {
                self.p += 1;
                self.be(2)?
            }
            0xdf => {
                self.p += 1;
                self.be(4)?
            }
            _ => return None,
        };
        Some(n as usize)
    }

    /// A string; on anything else the value is skipped.
    fn str(&mut self) -> Option<&'a [u8]> {
        let len = match *self.b.get(self.p)? {
            b @ 0xa0..=0xbf => {
                self.p += 1;
                u64::from(b & 0x1f)
            }
            0xd9 => {
                self.p += 1;
                self.be(1)?
            }
            0xda => {
                self.p += 1;
                self.be(2)?
            }
            0xdb => {
                self.p += 1;
                self.be(4)?
            }
            _ => {
                self.skip()?;
                return None;
            }
        } as usize;
        let s = self.b.get(self.p..self.p + len)?;
        self.p += len;
        Some(s)
    }

    /// An integer (consumed either way; `None` when it is not one).
    fn int(&mut self) -> Option<i64> {
        let b = *self.b.get(self.p)?;
        let v = match b {
            0x00..=0x7f => {
                self.p += 1;
                i64::from(b)
            }
            0xe0..=0xff => {
                self.p += 1;
                i64::from(b as i8)
            }
            0xcc => {
                self.p += 1;
                self.be(1)? as i64
            }
            0xcd => {
                self.p += 1;
                self.be(2)? as i64
            }
            0xce => {
                self.p += 1;
                self.be(4)? as i64
            }
            0xcf => {
                self.p += 1;
                self.be(8)? as i64
            }
            0xd0 => {
                self.p += 1;
                i64::from(self.be(1)? as u8 as i8)
            }
            0xd1 => {
                self.p += 1;
                i64::from(self.be(2)? as u16 as i16)
            }
            0xd2 => {
                self.p += 1;
                i64::from(self.be(4)? as u32 as i32)
            }
            0xd3 => {
                self.p += 1;
                self.be(8)? as i64
            }
            _ => {
                self.skip()?;
                return None;
            }
        };
        Some(v)
    }

    fn uint(&mut self) -> Option<u64> {
        self.int().and_then(|v| u64::try_from(v).ok())
    }

    fn skip(&mut self) -> Option<()> {
        let mut pending: usize = 1;
        while pending > 0 {
            pending -= 1;
            let b = self.byte()?;
            let (skip, children) = match b {
                0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => (0, 0),
                0x80..=0x8f => (0, 2 * usize::from(b & 0x0f)),
                0x90..=0x9f => (0, usize::from(b & 0x0f)),
                0xa0..=0xbf => (usize::from(b & 0x1f), 0),
                0xc1 => return None,
                0xc4 | 0xd9 => (self.be(1)? as usize, 0),
                0xc5 | 0xda => (self.be(2)? as usize, 0),
                0xc6 | 0xdb => (self.be(4)? as usize, 0),
                0xc7 => (self.be(1)? as usize + 1, 0),
                0xc8 => (self.be(2)? as usize + 1, 0),
                0xc9 => (self.be(4)? as usize + 1, 0),
                0xca => (4, 0),
                0xcb => (8, 0),
                0xcc | 0xd0 => (1, 0),
                0xcd | 0xd1 => (2, 0),
                0xce | 0xd2 => (4, 0),
                0xcf | 0xd3 => (8, 0),
                0xd4 => (2, 0),
                0xd5 => (3, 0),
                0xd6 => (5, 0),
                0xd7 => (9, 0),
                0xd8 => (17, 0),
                0xdc => (0, self.be(2)? as usize),
                0xdd => (0, self.be(4)? as usize),
                0xde => (0, 2 * self.be(2)? as usize),
                0xdf => (0, 2 * self.be(4)? as usize),
            };
            if self.p + skip > self.b.len() || children > self.b.len() - self.p - skip {
                return None;
            }
            self.p += skip;
            pending += children;
        }
        Some(())
    }
}

/// `{"type": "init", "auth": token, "v": 2, "resume": {"u": [epoch, offset]}}` (sessions,
/// docs/PROTOCOL.md 5.6); without `resume` when `from` is `None`.
pub fn init_v2(token: &str, from: Option<(&str, u64)>) -> Vec<u8> {
    let mut buf = Vec::new();
    rmp::encode::write_map_len(&mut buf, if from.is_some() { 4 } else { 3 }).unwrap();
    rmp::encode::write_str(&mut buf, "type").unwrap();
    rmp::encode::write_str(&mut buf, "init").unwrap();
    rmp::encode::write_str(&mut buf, "auth").unwrap();
    rmp::encode::write_str(&mut buf, token).unwrap();
    rmp::encode::write_str(&mut buf, "v").unwrap();
    rmp::encode::write_uint(&mut buf, 2).unwrap();
    if let Some((epoch, offset)) = from {
        rmp::encode::write_str(&mut buf, "resume").unwrap();
        rmp::encode::write_map_len(&mut buf, 1).unwrap();
        rmp::encode::write_str(&mut buf, "u").unwrap();
        rmp::encode::write_array_len(&mut buf, 2).unwrap();
        rmp::encode::write_str(&mut buf, epoch).unwrap();
        rmp::encode::write_uint(&mut buf, offset).unwrap();
    }
    buf
}

/// `{"type": "rpc", "id": id, "name": name, "args": [<strings and integers>]}`.
pub fn rpc(id: u64, name: &str, args: &[Arg<'_>]) -> Vec<u8> {
    let mut buf = Vec::new();
    rpc_into(&mut buf, id, name, args, false);
    buf
}

/// Every call frame the load generator sends, into `buf` (reused between calls):
/// `{"type": "rpc", "id", "name", "args"}`, then an empty `"kwargs": {}` when `kwargs` is set
/// (the Python client's shape).
fn rpc_into(buf: &mut Vec<u8>, id: u64, name: &str, args: &[Arg<'_>], kwargs: bool) {
    buf.clear();
    rmp::encode::write_map_len(buf, if kwargs { 5 } else { 4 }).unwrap();
    rmp::encode::write_str(buf, "type").unwrap();
    rmp::encode::write_str(buf, "rpc").unwrap();
    rmp::encode::write_str(buf, "id").unwrap();
    rmp::encode::write_uint(buf, id).unwrap();
    rmp::encode::write_str(buf, "name").unwrap();
    rmp::encode::write_str(buf, name).unwrap();
    rmp::encode::write_str(buf, "args").unwrap();
    rmp::encode::write_array_len(buf, args.len() as u32).unwrap();
    for a in args {
        match a {
            Arg::Str(s) => rmp::encode::write_str(buf, s).unwrap(),
            Arg::Int(n) => {
                rmp::encode::write_uint(buf, *n).unwrap();
            }
            Arg::Sint(n) => {
                rmp::encode::write_sint(buf, *n).unwrap();
            }
        }
    }
    if kwargs {
        rmp::encode::write_str(buf, "kwargs").unwrap();
        rmp::encode::write_map_len(buf, 0).unwrap();
    }
}

/// An argument of [`rpc`].
pub enum Arg<'a> {
    Str(&'a str),
    Int(u64),
    Sint(i64),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_replies_and_events() {
        // {"id": 300, "result": -5}
        let f = b"\x82\xa2id\xcd\x01\x2c\xa6result\xfb";
        assert_eq!(
            classify(f),
            Frame::Result {
                id: 300,
                value: Some(-5)
            }
        );
        let e = b"\x82\xa2id\x07\xa5error\x83\xa4code\xa1X\xa7message\xa1x\xa4data\xc0";
        assert_eq!(classify(e), Frame::Error { id: Some(7) });
        let ev = b"\x83\xa4type\xa5event\xa4name\xa6Notice\xa7payload\x82\xa4args\x90\xa6kwargs\x82\xa7message\xa3b:1\xa5level\x02";
        assert_eq!(
            classify(ev),
            Frame::Event {
                message: Some("b:1")
            }
        );
        let mut buf = Vec::new();
        rpc_add(&mut buf, 9, 2, 3);
        assert_eq!(classify(&buf), Frame::Other);
    }

    #[test]
    fn call_frames_are_the_maps_the_clients_send() {
        use rmpv::Value;
        let frame = |name: &str, args: Vec<Value>, kwargs: bool| {
            let mut m = vec![
                (Value::from("type"), Value::from("rpc")),
                (Value::from("id"), Value::from(9)),
                (Value::from("name"), Value::from(name)),
                (Value::from("args"), Value::Array(args)),
            ];
            if kwargs {
                m.push((Value::from("kwargs"), Value::Map(vec![])));
            }
            let mut out = Vec::new();
            rmpv::encode::write_value(&mut out, &Value::Map(m)).unwrap();
            out
        };
        let add = vec![Value::from(-2), Value::from(3)];
        let mut buf = Vec::new();
        rpc_add(&mut buf, 9, -2, 3);
        assert_eq!(buf, frame("add", add.clone(), false));
        rpc_add_kwargs(&mut buf, 9, -2, 3);
        assert_eq!(buf, frame("add", add, true));
        rpc_shout(&mut buf, 9, "hi");
        assert_eq!(buf, frame("shout", vec![Value::from("hi")], false));
        rpc_shout_kwargs(&mut buf, 9, "hi");
        assert_eq!(buf, frame("shout", vec![Value::from("hi")], true));
        let burst = rpc(9, "burst_to", &[Arg::Str("u"), Arg::Int(0), Arg::Int(1000)]);
        assert_eq!(
            burst,
            frame(
                "burst_to",
                vec![Value::from("u"), Value::from(0), Value::from(1000)],
                false
            )
        );
    }
}
