#[ephaptic::expose(broadcast = ["todoCreated", "todosChanged", "todoCreated"])]
async fn create() -> u32 {
    1
}

fn main() {}
