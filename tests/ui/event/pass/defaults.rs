// `#[ephaptic(default = ..)]` with every kind of value; every field has one, so `Default` is
// generated and agrees with the wire defaults.
#[ephaptic::event]
#[derive(Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SomethingHappened {
    /// Documented, and the `@default` line is added after the docs.
    #[ephaptic(default = 1)]
    pub code: i64,
    #[ephaptic(default = "it happened")]
    pub message: String,
    #[ephaptic(default)]
    pub is_error: bool,
    #[ephaptic(default = Vec::new())]
    pub tags: Vec<String>,
    #[ephaptic(default = Some(-1))]
    pub r#type: Option<i8>,
}

// `default` asks for the `Default` impl when some fields have no default of ours.
#[ephaptic::event(name = "saved", default)]
pub struct Saved {
    pub id: u64,
    #[ephaptic(default = 3)]
    pub retries: u8,
}

fn main() {
    let e = SomethingHappened::default();
    assert_eq!(e.code, 1);
    assert_eq!(e.message, "it happened");
    let s = Saved { id: 7, ..Default::default() };
    assert_eq!(s.retries, 3);
}
