// The user's `#[serde(...)]` attributes are honoured by the derives the macro writes.
#[ephaptic::event]
#[derive(Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Notice {
    pub message: String,
    pub is_error: bool,
    #[serde(default)]
    pub retry_count: u32,
    #[serde(rename = "lvl")]
    pub level: u8,
    #[serde(skip)]
    pub internal: u64,
}

/// The value as the wire carries it: MessagePack with field names.
fn wire(value: &impl serde::Serialize) -> rmpv::Value {
    let bytes = rmp_serde::to_vec_named(value).unwrap();
    rmpv::decode::read_value(&mut &bytes[..]).unwrap()
}

fn main() {
    let notice = Notice {
        message: "hi".into(),
        is_error: true,
        retry_count: 0,
        level: 2,
        internal: 9,
    };
    let value = wire(&notice);
    assert_eq!(
        value,
        rmpv::Value::Map(vec![
            ("message".into(), "hi".into()),
            ("isError".into(), true.into()),
            ("retryCount".into(), 0.into()),
            ("lvl".into(), 2.into()),
        ])
    );
    // `retryCount` may be left out, and `internal` is never read.
    let back: Notice = rmpv::ext::from_value(rmpv::Value::Map(vec![
        ("message".into(), "hi".into()),
        ("isError".into(), true.into()),
        ("lvl".into(), 2.into()),
    ]))
    .unwrap();
    assert_eq!(
        back,
        Notice {
            internal: 0,
            ..notice
        }
    );
}
