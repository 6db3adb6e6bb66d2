use serde::{Deserialize, Serialize};

#[derive(Deserialize, Serialize)]
struct Point {
    x: f64,
    y: f64,
}

/// Moves a point; several parameters of serde types, one of them optional.
#[ephaptic::expose]
async fn translate(
    point: Point,
    dx: f64,
    dy: Option<f64>,
    tags: Vec<String>,
    label: Option<String>,
) -> Point {
    let _ = (tags, label);
    Point {
        x: point.x + dx,
        y: point.y + dy.unwrap_or(0.0),
    }
}

fn main() {}
