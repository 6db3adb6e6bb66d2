// A `String` error is `Serialize`, but clients need a code: it must not travel as a plain
// `{"Err": ..}` value.
#[ephaptic::expose]
async fn parse(text: String) -> Result<u32, String> {
    text.parse().map_err(|e| format!("{e}"))
}

fn main() {}
