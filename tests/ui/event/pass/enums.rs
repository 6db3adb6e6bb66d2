use ephaptic::Event;

// Internally tagged: every variant travels as a map, unit variants included.
#[ephaptic::event]
#[derive(Debug)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Change {
    Added { id: u64 },
    Removed { id: u64 },
    Cleared,
}

// Adjacently tagged: always a map too.
#[ephaptic::event(name = "presence")]
#[serde(tag = "t", content = "c")]
pub enum Presence {
    Joined(String),
    Left,
}

// Externally tagged with only struct variants: `{"Moved": {"x": .., "y": ..}}`.
#[ephaptic::event]
pub enum Pointer {
    Moved { x: i32, y: i32 },
    Clicked { button: u8 },
}

/// The value as the wire carries it: MessagePack with field names.
fn wire(value: &impl serde::Serialize) -> rmpv::Value {
    let bytes = rmp_serde::to_vec_named(value).unwrap();
    rmpv::decode::read_value(&mut &bytes[..]).unwrap()
}

fn main() {
    assert_eq!(Change::NAME, "Change");
    assert_eq!(Presence::NAME, "presence");
    assert_eq!(Pointer::NAME, "Pointer");
    assert_eq!(
        wire(&Change::Added { id: 1 }),
        rmpv::Value::Map(vec![
            ("kind".into(), "added".into()),
            ("id".into(), 1.into())
        ])
    );
    assert_eq!(
        wire(&Change::Cleared),
        rmpv::Value::Map(vec![("kind".into(), "cleared".into())])
    );
    let _ = Presence::Joined(String::new());
    let _ = Presence::Left;
    let _ = Pointer::Clicked { button: 1 };
    let _ = Pointer::Moved { x: 0, y: 0 };
}
