use ephaptic::{Audience, Caller};

pub struct Todo {
    pub id: u64,
}

fn everyone(_caller: &Caller, _todo: &Todo) -> Audience {
    Audience::everyone()
}

#[ephaptic::expose(broadcast = ["todoCreated"])]
async fn create() -> Result<Todo, ephaptic::Error> {
    Ok(Todo { id: 1 })
}

#[ephaptic::expose(broadcast = ["todoCreated"], broadcast_to = everyone)]
fn create_sync() -> Todo {
    Todo { id: 2 }
}

fn main() {}
