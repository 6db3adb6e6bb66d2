use ephaptic::{Audience, Caller};

#[derive(serde::Serialize)]
pub struct Todo {
    pub owner: String,
}

fn by_owner_name(_caller: &Caller, owner: &String) -> Audience {
    Audience::users(owner.clone())
}

fn returns_nothing(_caller: &Caller, _todo: &Todo) {}

fn owned_caller(_caller: Caller, _todo: &Todo) -> Audience {
    Audience::everyone()
}

const NOT_A_FUNCTION: u32 = 0;

#[ephaptic::expose(broadcast = ["todoCreated"], broadcast_to = by_owner_name)]
async fn wrong_value(owner: String) -> Todo {
    Todo { owner }
}

#[ephaptic::expose(broadcast = ["todoCreated"], broadcast_to = returns_nothing)]
async fn wrong_return(owner: String) -> Result<Todo, ephaptic::Error> {
    Ok(Todo { owner })
}

#[ephaptic::expose(broadcast = ["todoCreated"], broadcast_to = owned_caller)]
async fn wrong_caller(owner: String) -> Todo {
    Todo { owner }
}

#[ephaptic::expose(broadcast = ["todoCreated"], broadcast_to = NOT_A_FUNCTION)]
async fn not_a_function(owner: String) -> Todo {
    Todo { owner }
}

fn main() {}
