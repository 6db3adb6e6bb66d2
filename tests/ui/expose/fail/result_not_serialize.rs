struct Point {
    x: f64,
    y: f64,
}

#[ephaptic::expose]
async fn origin() -> Result<Point, ephaptic::Error> {
    Ok(Point { x: 0.0, y: 0.0 })
}

#[derive(Debug)]
struct NotAnError;

#[ephaptic::expose]
fn check(n: u32) -> Result<u32, NotAnError> {
    if n == 0 { Err(NotAnError) } else { Ok(n) }
}

fn main() {}
