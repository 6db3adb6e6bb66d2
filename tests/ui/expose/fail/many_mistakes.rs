// Every mistake is reported in one build.
#[ephaptic::expose(nmae = "x", requires_login = "yes")]
async fn everything<T>(&self, (a, b): (i64, i64), name: &str, value: impl Clone) -> i64 {
    a + b
}

fn main() {}
