// Each `emit` without `.await` sends nothing; the warning says so (denied here to capture it).
#![deny(unused_must_use)]

use ephaptic::Caller;

#[ephaptic::event]
pub struct Pong {
    pub ok: bool,
}

#[ephaptic::expose]
async fn ping(caller: Caller) {
    ephaptic::emit(Pong { ok: true });
    ephaptic::to(1).emit(Pong { ok: true });
    caller.emit(Pong { ok: true });
}

fn main() {}
