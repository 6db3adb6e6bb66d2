#[ephaptic::expose(name = "add", requires_login, name = "plus")]
async fn add(a: i64, b: i64) -> i64 {
    a + b
}

fn main() {}
