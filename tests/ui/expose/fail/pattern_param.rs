#[derive(serde::Deserialize)]
struct Point {
    x: f64,
    y: f64,
}

#[ephaptic::expose]
async fn norm(Point { x, y }: Point, (a, b): (f64, f64)) -> f64 {
    (x * x + y * y).sqrt() + a + b
}

fn main() {}
