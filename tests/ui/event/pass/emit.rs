// Every way to send an event type-checks, with the event by value or by reference.
use ephaptic::Caller;

#[ephaptic::event]
#[derive(Clone)]
pub struct Pong {
    pub ok: bool,
}

#[ephaptic::event]
#[serde(tag = "kind")]
pub enum Change {
    Added { id: u64 },
    Cleared,
}

#[ephaptic::expose]
async fn ping(caller: Caller) -> usize {
    let pong = Pong { ok: true };
    let mut reached = ephaptic::emit(pong.clone()).await.local;
    reached += ephaptic::emit(&pong).await.local;
    reached += ephaptic::to(1).emit(pong.clone()).await.local;
    reached += ephaptic::to([1, 2]).emit(&pong).await.local;
    reached += ephaptic::to("alice").emit(Change::Cleared).await.local;
    reached += ephaptic::group("room").emit(Change::Added { id: 1 }).await.local;
    reached += ephaptic::Audience::everyone().emit(&pong).await.local;
    let _still_open: bool = caller.emit(pong).await;
    caller.emit(&Change::Cleared).await;
    reached
}

// Outside a handler too, e.g. from a background task.
async fn background() -> usize {
    ephaptic::emit(Pong { ok: false }).await.local
}

fn main() {
    let _ = background();
}
