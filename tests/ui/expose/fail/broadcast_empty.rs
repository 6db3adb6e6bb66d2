#[ephaptic::expose(broadcast = [])]
async fn create() -> u32 {
    1
}

fn main() {}
