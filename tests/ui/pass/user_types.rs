use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use taskflow::{TaskContext, task};

#[derive(Deserialize, JsonSchema)]
struct Point {
    x: i64,
    y: i64,
}

#[derive(Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
enum Direction {
    North,
    South,
}

#[derive(Serialize, JsonSchema)]
struct Moved {
    to: Point2,
    facing: Direction,
}

#[derive(Serialize, JsonSchema)]
struct Point2 {
    x: i64,
    y: i64,
}

/// Move a point one step
#[task]
fn step(ctx: &TaskContext, from: Point, facing: Direction) -> Moved {
    ctx.info("stepping");
    let dy = match facing {
        Direction::North => 1,
        Direction::South => -1,
    };
    Moved { to: Point2 { x: from.x, y: from.y + dy }, facing }
}

/// Turn around, slowly
#[task]
async fn turn(ctx: &TaskContext, facing: Direction) -> Direction {
    ctx.progress(1, 1);
    match facing {
        Direction::North => Direction::South,
        Direction::South => Direction::North,
    }
}

fn main() {
    let ctx = TaskContext::new("run-1");
    let moved = step(&ctx, Point { x: 1, y: 1 }, Direction::North);
    assert_eq!((moved.to.x, moved.to.y), (1, 2));
    assert_eq!(moved.facing, Direction::North);

    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    assert_eq!(runtime.block_on(turn(&ctx, Direction::North)), Direction::South);

    let def = taskflow::task_def("step").expect("`step` is registered");
    // The context is not part of the payload.
    let properties = def.args_schema()["properties"].as_object().unwrap();
    assert!(properties.contains_key("from") && properties.contains_key("facing"));
    assert!(!properties.contains_key("ctx"));
    assert!(taskflow::task_def("turn").unwrap().is_async());
}
