#[ephaptic::expose(broadcast = ["todoCreated"], broadcast_to = "owner_of")]
async fn create() -> u32 {
    1
}

fn main() {}
