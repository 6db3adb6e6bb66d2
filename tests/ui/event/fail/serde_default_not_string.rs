// One error at the value, not serde's error and then every use of the `Serialize` it would not
// derive: the event is still usable below.
#[ephaptic::event]
pub struct Ev {
    #[serde(default = 1)]
    pub code: i64,
}

async fn send() -> usize {
    ephaptic::emit(Ev { code: 1 }).await.local
}

fn main() {
    let _ = send();
}
