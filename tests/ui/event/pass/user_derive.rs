// The user already derives one or both serde traits (below the attribute): the macro derives
// only the missing ones.
use serde::{Deserialize, Serialize};

#[ephaptic::event]
#[derive(Debug, Serialize, Deserialize)]
pub struct Both {
    pub ok: bool,
}

#[ephaptic::event]
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OnlySerialize {
    pub user_id: u64,
}

#[ephaptic::event(name = "onlyDeserialize")]
#[derive(Clone, Deserialize)]
pub struct OnlyDeserialize {
    pub user_id: u64,
}

fn assert_serde<T: Serialize + for<'de> Deserialize<'de> + ephaptic::Event>() {}

/// The value as the wire carries it: MessagePack with field names.
fn wire(value: &impl serde::Serialize) -> rmpv::Value {
    let bytes = rmp_serde::to_vec_named(value).unwrap();
    rmpv::decode::read_value(&mut &bytes[..]).unwrap()
}

fn main() {
    assert_serde::<Both>();
    assert_serde::<OnlySerialize>();
    assert_serde::<OnlyDeserialize>();
    assert_eq!(
        wire(&OnlySerialize { user_id: 7 }),
        rmpv::Value::Map(vec![("userId".into(), 7.into())])
    );
}
