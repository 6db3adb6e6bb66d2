//! A client that speaks sessions (docs/PROTOCOL.md 5.6), for the sessions tests on one
//! server and across servers.

use rmpv::Value;

use super::*;

pub fn int(n: i64) -> Value {
    Value::from(n)
}

/// A client that speaks sessions, with the positions it has seen.
pub struct Tab {
    pub c: Client,
    /// stream -> (epoch, offset).
    pub pos: Vec<(String, (String, u64))>,
}

impl Tab {
    /// Connects as `user` with `v: 2`, asking to resume from `pos`; sends the hello and returns
    /// the tab, the events that came before the hello's answer, and the answer.
    pub async fn open(
        url: &str,
        user: &str,
        pos: Vec<(String, (String, u64))>,
    ) -> (Tab, Vec<Value>, Value) {
        let mut c = Client::connect(url).await;
        let resume = Value::Map(
            pos.iter()
                .map(|(s, (e, o))| {
                    (
                        Value::from(s.as_str()),
                        Value::Array(vec![Value::from(e.as_str()), Value::from(*o)]),
                    )
                })
                .collect(),
        );
        c.send(&map(vec![
            ("type", v("init")),
            ("auth", v(user)),
            ("v", int(2)),
            ("resume", resume),
        ]))
        .await;
        c.send(&rpc(0, "__ephaptic.hello", vec![])).await;
        let mut before = Vec::new();
        let hello = loop {
            let f = c.recv().await;
            if has(&f, "id") {
                break f;
            }
            before.push(f);
        };
        let mut tab = Tab { c, pos };
        for e in &before {
            tab.note(e);
        }
        let result = get(&hello, "result").clone();
        assert!(has(&hello, "result"), "hello: {hello}");
        for (name, s) in result_streams(&result) {
            tab.set(
                &name,
                get(&s, "epoch").as_str().unwrap(),
                get(&s, "offset").as_u64().unwrap(),
            );
        }
        (tab, before, result)
    }

    fn set(&mut self, stream: &str, epoch: &str, offset: u64) {
        self.pos.retain(|(s, _)| s != stream);
        self.pos
            .push((stream.to_owned(), (epoch.to_owned(), offset)));
    }

    /// Records the position of a frame read some other way.
    pub fn note_frame(&mut self, e: &Value) {
        self.note(e);
    }

    /// Records an event's position.
    fn note(&mut self, e: &Value) {
        if let (Some(s), Some(seq), Some(epoch)) = (
            get(e, "stream").as_str(),
            get(e, "seq").as_u64(),
            get(e, "epoch").as_str(),
        ) {
            let (s, epoch) = (s.to_owned(), epoch.to_owned());
            self.set(&s, &epoch, seq);
        }
    }

    /// The next frame, its position noted.
    pub async fn next(&mut self) -> Value {
        let f = self.c.recv().await;
        self.note(&f);
        f
    }
}

pub fn result_streams(result: &Value) -> Vec<(String, Value)> {
    get(result, "streams")
        .as_map()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.as_str().unwrap().to_owned(), v.clone()))
                .collect()
        })
        .unwrap_or_default()
}

pub fn stream<'a>(result: &'a Value, name: &str) -> &'a Value {
    get(get(result, "streams"), name)
}

pub fn messages(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter(|e| get(e, "type").as_str() == Some("event"))
        .map(|e| get(kwargs(e), "message").as_str().unwrap().to_owned())
        .collect()
}

pub fn kwargs(e: &Value) -> &Value {
    get(get(e, "payload"), "kwargs")
}

/// Sends `n` events to `user`, numbered from `from`, from another connection.
pub async fn burst(url: &str, user: &str, from: i64, n: i64) {
    let mut sender = Client::connect(url).await;
    assert_eq!(
        sender
            .ok("burst_to", vec![v(user), int(from), int(n)])
            .await,
        int(n)
    );
}

pub fn numbers(from: i64, n: i64) -> Vec<String> {
    (from..from + n).map(|i| i.to_string()).collect()
}
