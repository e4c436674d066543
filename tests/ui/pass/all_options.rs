/// Ignored: the description option wins
///
/// # Arguments
/// * `a` - the first addend
/// * `b` - the second addend
#[taskflow::task(
    title = "sum_v2",
    description = "Add two numbers",
    timeout = "1h30m",
    retries = 3,
    executor = "process",
    tags = ["math", "demo"],
    defaults(b = 1)
)]
fn add(a: i64, b: i64) -> i64 {
    a + b
}

/// Tags written as a call
#[taskflow::task(tags("x", "y"), timeout = "500ms", executor = "thread")]
fn tagged() {}

fn main() {
    assert_eq!(add(1, 2), 3);
    assert!(taskflow::task_def("add").is_none(), "the title replaces the name");
    let def = taskflow::task_def("sum_v2").expect("`sum_v2` is registered");
    assert_eq!(def.title(), "sum_v2");
    assert_eq!(def.description(), "Add two numbers");
    assert_eq!(def.args_schema()["properties"]["b"]["default"], 1);
    assert!(taskflow::task_def("tagged").is_some());
    tagged();
}
