// The user already derives Serialize (with their own serde attributes); the macro must not
// derive it a second time.
#[ephaptic::error(code = "RATE_LIMITED_APP", message = "Slow down.")]
#[derive(serde::Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct RateLimited {
    pub retry_after_ms: u64,
}

#[ephaptic::error(code = "LOCKED")]
#[derive(Debug, serde::Serialize, Clone)]
struct Locked {
    until: String,
}

fn main() {
    let _: ephaptic::Error = RateLimited { retry_after_ms: 5 }.into();
    let _: ephaptic::Error = Locked {
        until: String::new(),
    }
    .into();
}
