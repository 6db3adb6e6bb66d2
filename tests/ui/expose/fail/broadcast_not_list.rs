#[ephaptic::expose(broadcast = "todoCreated")]
async fn create() -> u32 {
    1
}

fn main() {}
