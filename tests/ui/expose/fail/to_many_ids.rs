// The Python tutorial's spelling, `to(1, 2, 3)`: the compiler alone would suggest removing the
// extra arguments (reaching user 1 only); the macro names the two spellings that reach all three.
#[ephaptic::event]
pub struct Ping {
    pub n: i64,
}

#[ephaptic::expose]
async fn notify_three() {
    ephaptic::to(1, 2, 3).emit(Ping { n: 1 }).await;
}

fn main() {}
