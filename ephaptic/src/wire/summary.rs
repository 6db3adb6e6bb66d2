//! What a frame is, in a few words, for the inspector's trace (`runtime/trace.rs`): its kind (a
//! client's `rpc` or `cancel`; a server's `result`, `error`, `chunk`, `event`, `position`, ...),
//! the function's or event's name, the call id as text, an error's code, an event's stream and
//! offset. Never a value: arguments, results, payloads and error messages are skipped unread.
//! Read only for connections someone traces, so it may allocate.

use super::frame::Reader;

/// A frame in a few words; every text is cut to [`CUT`] characters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Summary {
    /// The frame's `type`, else the key an answer carries (`result`, `error`, `chunk`, `stream`,
    /// `done`); `unreadable` for bytes that are no frame.
    pub kind: String,
    pub name: Option<String>,
    /// The call id, as MessagePack values print (`7`, `"a"`); its size alone when it is large.
    pub id: Option<String>,
    /// An error answer's code.
    pub code: Option<String>,
    /// An event's stream (`u`, `b`, `g:room`) and its offset there (`seq`, or a position
    /// frame's `offset`).
    pub stream: Option<String>,
    pub offset: Option<u64>,
}

/// The longest text a summary keeps of a name, an id or a code.
pub(crate) const CUT: usize = 80;

/// `s` cut to [`CUT`] characters (a client chooses a function's name and a call's id).
pub(crate) fn cut(s: &str) -> String {
    match s.char_indices().nth(CUT) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s.to_owned(),
    }
}

/// The summary of `frame`, a client's or the server's.
pub(crate) fn summarize(frame: &[u8]) -> Summary {
    read(frame).unwrap_or_else(|| Summary {
        kind: "unreadable".into(),
        ..Summary::default()
    })
}

fn read(frame: &[u8]) -> Option<Summary> {
    let mut r = Reader { buf: frame, pos: 0 };
    let entries = r.map_len().ok()??;
    let mut out = Summary::default();
    let mut kind: Option<String> = None;
    let mut answer: Option<&'static str> = None;
    let text = |r: &mut Reader<'_>| -> Option<Option<String>> {
        match r.str().ok()? {
            Some(span) => Some(Some(cut(std::str::from_utf8(span.of(frame)).ok()?))),
            None => {
                r.skip().ok()?;
                Some(None)
            }
        }
    };
    for _ in 0..entries {
        let key = r.str().ok()?;
        let Some(key) = key else {
            r.skip().ok()?;
            r.skip().ok()?;
            continue;
        };
        match key.of(frame) {
            b"type" => kind = text(&mut r)?,
            b"name" => out.name = text(&mut r)?,
            b"id" => {
                let start = r.pos;
                r.skip().ok()?;
                out.id = Some(id_text(&frame[start..r.pos]));
            }
            b"error" => {
                answer = Some("error");
                out.code = error_code(&mut r, frame)?;
            }
            b"stream" => {
                // An event's stream name, or an answer's `stream: true`.
                match text(&mut r)? {
                    Some(name) => out.stream = Some(name),
                    None => answer = Some("stream"),
                }
            }
            b"seq" | b"offset" => {
                let start = r.pos;
                r.skip().ok()?;
                out.offset = uint(&frame[start..r.pos]);
            }
            k @ (b"result" | b"chunk" | b"done") => {
                answer = Some(match k {
                    b"result" => "result",
                    b"chunk" => "chunk",
                    _ => "done",
                });
                r.skip().ok()?;
            }
            _ => r.skip().ok()?,
        }
    }
    out.kind = match (kind, answer) {
        (Some(kind), _) => kind,
        (None, Some(answer)) => answer.to_owned(),
        (None, None) => "frame".to_owned(),
    };
    Some(out)
}

/// The `code` of an `error` value at the cursor (which it moves past); `None` when unreadable.
fn error_code(r: &mut Reader<'_>, frame: &[u8]) -> Option<Option<String>> {
    let Some(n) = r.map_len().ok()? else {
        r.skip().ok()?;
        return Some(None);
    };
    let mut code = None;
    for _ in 0..n {
        let key = r.str().ok()?;
        if key.is_some_and(|k| k.of(frame) == b"code")
            && let Some(value) = r.str().ok()?
        {
            code = Some(cut(std::str::from_utf8(value.of(frame)).ok()?));
            continue;
        }
        if key.is_none() {
            r.skip().ok()?;
        }
        r.skip().ok()?;
    }
    Some(code)
}

/// A call id as text: the value as MessagePack values print, or its size when it is large.
fn id_text(encoded: &[u8]) -> String {
    if encoded.len() > 64 {
        return format!("({} bytes)", encoded.len());
    }
    match rmpv::decode::read_value(&mut &encoded[..]) {
        Ok(v) => cut(&v.to_string()),
        Err(_) => format!("({} bytes)", encoded.len()),
    }
}

/// An unsigned integer, encoded.
fn uint(encoded: &[u8]) -> Option<u64> {
    let (&head, rest) = encoded.split_first()?;
    let be = |n: usize| -> Option<u64> {
        (rest.len() == n).then(|| rest.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    };
    match head {
        0x00..=0x7f => Some(u64::from(head)),
        0xcc => be(1),
        0xcd => be(2),
        0xce => be(4),
        0xcf => be(8),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::reply;
    use super::*;

    fn enc(v: &rmpv::Value) -> Vec<u8> {
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, v).unwrap();
        out
    }

    #[test]
    fn a_call_reads_as_its_name_and_id_never_its_arguments() {
        let s = |x: &str| rmpv::Value::from(x);
        let frame = enc(&rmpv::Value::Map(vec![
            (s("type"), s("rpc")),
            (s("id"), 7.into()),
            (s("name"), s("add")),
            (s("args"), rmpv::Value::Array(vec![s("secret")])),
        ]));
        let got = summarize(&frame);
        assert_eq!(got.kind, "rpc");
        assert_eq!(got.name.as_deref(), Some("add"));
        assert_eq!(got.id.as_deref(), Some("7"));
        assert!(!format!("{got:?}").contains("secret"));
        let cancel = enc(&rmpv::Value::Map(vec![
            (s("type"), s("cancel")),
            (s("id"), s("c1")),
        ]));
        assert_eq!(summarize(&cancel).id.as_deref(), Some("\"c1\""));
        assert_eq!(summarize(b"\xc1").kind, "unreadable");
        assert_eq!(summarize(b"\x81\xa2id").kind, "unreadable");
    }

    #[test]
    fn server_frames_read_as_their_answer_or_event() {
        let ok = summarize(&reply::result_frame(&[3], &"private").unwrap());
        assert_eq!((ok.kind.as_str(), ok.id.as_deref()), ("result", Some("3")));
        let err = summarize(&reply::error_frame(&[4], "TOO_BIG", "no", None));
        assert_eq!(err.kind, "error");
        assert_eq!(err.code.as_deref(), Some("TOO_BIG"));
        assert_eq!(summarize(&reply::stream_open_frame(&[5])).kind, "stream");
        assert_eq!(summarize(&reply::stream_done_frame(&[5])).kind, "done");
        assert_eq!(
            summarize(&reply::chunk_frame(&[5], &1u8).unwrap()).kind,
            "chunk"
        );
        let event = reply::event_frame("Joined", &"payload").unwrap();
        let at = reply::positioned(&event, "g:room", 300, "Ep0ch").unwrap();
        let got = summarize(&at);
        assert_eq!(got.kind, "event");
        assert_eq!(got.name.as_deref(), Some("Joined"));
        assert_eq!(got.stream.as_deref(), Some("g:room"));
        assert_eq!(got.offset, Some(300));
        let pos = reply::position_frame("position", "g:room", "Ep0ch", 70_000, 0, &[]);
        let got = summarize(&pos);
        assert_eq!((got.kind.as_str(), got.offset), ("position", Some(70_000)));
    }

    #[test]
    fn long_texts_are_cut() {
        let long = "x".repeat(500);
        assert_eq!(cut(&long).chars().count(), CUT + 1);
        assert_eq!(cut("short"), "short");
        let id = enc(&rmpv::Value::from(long.as_str()));
        assert_eq!(id_text(&id), format!("({} bytes)", id.len()));
    }
}
