#[derive(serde::Deserialize, schemars::JsonSchema)]
struct Point {
    x: i64,
    y: i64,
}

#[taskflow::task]
fn norm(point: &Point) -> i64 {
    point.x.abs() + point.y.abs()
}

fn main() {}
