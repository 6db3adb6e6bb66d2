use std::rc::Rc;

async fn tick() {}

#[ephaptic::expose]
async fn count(n: u64) -> u64 {
    let shared = Rc::new(n);
    tick().await;
    *shared
}

fn main() {}
