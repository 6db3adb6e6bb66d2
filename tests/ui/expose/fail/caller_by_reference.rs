use ephaptic::Caller;

#[ephaptic::expose]
async fn who(caller: &Caller) -> String {
    format!("{:?}", caller.identity())
}

fn main() {}
