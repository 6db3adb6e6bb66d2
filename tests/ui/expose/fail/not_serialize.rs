struct Point {
    x: f64,
    y: f64,
}

#[ephaptic::expose]
async fn origin() -> Point {
    Point { x: 0.0, y: 0.0 }
}

fn main() {}
