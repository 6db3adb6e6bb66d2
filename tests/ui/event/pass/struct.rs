use ephaptic::Event;

/// A reply to `ping`. (The doc comment travels to the generated TypeScript.)
#[ephaptic::event]
pub struct Pong {
    pub ok: bool,
}

#[ephaptic::event]
#[derive(Debug, Clone, PartialEq)]
struct Moved {
    x: f64,
    y: f64,
}

/// The value as the wire carries it: MessagePack with field names.
fn wire(value: &impl serde::Serialize) -> rmpv::Value {
    let bytes = rmp_serde::to_vec_named(value).unwrap();
    rmpv::decode::read_value(&mut &bytes[..]).unwrap()
}

fn main() {
    assert_eq!(Pong::NAME, "Pong");
    assert_eq!(<Moved as Event>::NAME, "Moved");
    // `Serialize` and `Deserialize` are derived.
    let value = wire(&Pong { ok: true });
    assert_eq!(value, rmpv::Value::Map(vec![("ok".into(), true.into())]));
    let moved: Moved = rmpv::ext::from_value(rmpv::Value::Map(vec![
        ("x".into(), 1.0.into()),
        ("y".into(), 2.0.into()),
    ]))
    .unwrap();
    assert_eq!(moved, Moved { x: 1.0, y: 2.0 });
}
