use ephaptic::{Audience, Caller};

#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct Todo {
    pub id: u64,
    pub owner: String,
}

#[ephaptic::error(code = "EMPTY_TITLE")]
#[derive(Debug)]
pub struct EmptyTitle;

fn owner_of(_caller: &Caller, todo: &Todo) -> Audience {
    Audience::users(todo.owner.clone())
}

mod audiences {
    use ephaptic::{Audience, Caller};

    pub fn callers_group(caller: &Caller, _count: &usize) -> Audience {
        match caller.identity() {
            Some(id) => Audience::group(format!("user:{id}")),
            None => Audience::nobody(),
        }
    }

    pub fn owner_of(_caller: &Caller, todo: &super::Todo) -> Audience {
        Audience::users(todo.owner.clone())
    }
}

// One channel, plain value, everyone hears it.
#[ephaptic::expose(broadcast = ["todoCreated"])]
async fn create(owner: String) -> Todo {
    Todo { id: 1, owner }
}

// Two channels, `Result`: the `Ok` value is announced; nothing on `Err`.
#[ephaptic::expose(broadcast = ["todoCreated", "todosChanged"])]
async fn create_checked(owner: String) -> Result<Todo, EmptyTitle> {
    if owner.is_empty() {
        return Err(EmptyTitle);
    }
    Ok(Todo { id: 2, owner })
}

// `ephaptic::Result` (an alias) counts as a `Result`.
#[ephaptic::expose(broadcast = ["todoCreated"], broadcast_to = owner_of)]
async fn create_for_owner(owner: String) -> ephaptic::Result<Todo> {
    Ok(Todo { id: 3, owner })
}

#[ephaptic::expose(broadcast = ["todoCreated", "todosChanged"], broadcast_to = owner_of)]
fn create_sync(owner: String) -> Todo {
    Todo { id: 4, owner }
}

// `broadcast_to` names a function in another module.
#[ephaptic::expose(broadcast = ["todosCleared"], broadcast_to = audiences::callers_group)]
async fn clear(caller: Caller) -> usize {
    let _ = caller;
    0
}

#[ephaptic::expose(
    name = "updateTodo",
    requires_login,
    broadcast = ["todoUpdated", "todosChanged"],
    broadcast_to = audiences::owner_of
)]
async fn update(todo: Todo) -> Result<Todo, ephaptic::Error> {
    Ok(todo)
}

// A unit value is announced too (as nil): the channel says that something happened.
#[ephaptic::expose(broadcast = ["pinged"])]
async fn ping() {}

fn main() {
    use ephaptic::Exposed;
    assert_eq!(<create as Exposed>::def().channels, ["todoCreated"]);
    assert_eq!(
        <create_checked as Exposed>::def().channels,
        ["todoCreated", "todosChanged"]
    );
    assert_eq!(<update as Exposed>::def().name, "updateTodo");
}

fn same_lifetime<'a>(_caller: &'a Caller, todo: &'a Todo) -> Audience {
    Audience::users(todo.owner.clone())
}

fn generic_audience<T>(_caller: &Caller, _value: &T) -> Audience {
    Audience::everyone()
}

#[ephaptic::expose(broadcast = ["x"], broadcast_to = same_lifetime)]
async fn x(owner: String) -> Todo {
    Todo { id: 1, owner }
}

#[ephaptic::expose(broadcast = ["y"], broadcast_to = generic_audience)]
async fn y(owner: String) -> Todo {
    Todo { id: 1, owner }
}
