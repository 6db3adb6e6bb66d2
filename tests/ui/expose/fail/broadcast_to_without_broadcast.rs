use ephaptic::{Audience, Caller};

fn everyone(_caller: &Caller, _value: &u32) -> Audience {
    Audience::everyone()
}

#[ephaptic::expose(broadcast_to = everyone)]
async fn count() -> u32 {
    1
}

fn main() {}
