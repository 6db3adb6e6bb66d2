use ephaptic::Caller;

#[ephaptic::expose]
async fn first(caller: Caller, a: i64) -> bool {
    caller.is_authenticated() && a > 0
}

#[ephaptic::expose]
async fn middle(a: i64, caller: ephaptic::Caller, b: String) -> String {
    format!("{a} {b} {}", caller.is_authenticated())
}

#[ephaptic::expose]
fn sync_last(a: i64, _caller: Caller) -> i64 {
    a
}

fn main() {}
