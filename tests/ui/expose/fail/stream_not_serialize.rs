use futures_util::stream::{self, Stream};

struct Point {
    x: f64,
}

#[ephaptic::expose]
async fn points() -> impl Stream<Item = Point> {
    stream::iter(vec![Point { x: 0.0 }])
}

fn main() {}
