#[ephaptic::expose(broadcast = [1, "todoCreated", todo_changed])]
async fn create() -> u32 {
    1
}

fn main() {}
