use ephaptic::Event;

#[ephaptic::event(name = "todo:created")]
pub struct TodoCreated {
    pub id: u64,
}

#[ephaptic::event(name = "pong")]
#[derive(Debug)]
pub struct Pong {
    pub ok: bool,
}

fn main() {
    assert_eq!(TodoCreated::NAME, "todo:created");
    assert_eq!(Pong::NAME, "pong");
}
