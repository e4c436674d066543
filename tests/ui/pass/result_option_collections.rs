use std::collections::HashMap;
use std::fmt;

use taskflow::task;

#[derive(Debug)]
struct MyError;

impl fmt::Display for MyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("my error")
    }
}

/// The usual crate-level alias, named `Result` like `std::io::Result`.
type Result<T> = std::result::Result<T, MyError>;

#[task]
fn checked_div(a: i64, b: i64) -> std::result::Result<i64, String> {
    if b == 0 { Err("division by zero".to_owned()) } else { Ok(a / b) }
}

#[task]
fn aliased(a: i64) -> Result<i64> {
    if a < 0 { Err(MyError) } else { Ok(a) }
}

#[task]
fn io_aliased(path: String) -> std::io::Result<u64> {
    Ok(path.len() as u64)
}

#[task]
fn maybe(value: Option<i64>) -> Option<i64> {
    value.map(|v| v * 2)
}

#[task]
fn totals(values: Vec<i64>, weights: HashMap<String, f64>) -> HashMap<String, f64> {
    let sum: i64 = values.iter().sum();
    weights.into_iter().map(|(k, w)| (k, w * sum as f64)).collect()
}

fn main() {
    assert_eq!(checked_div(6, 3), Ok(2));
    assert!(aliased(-1).is_err());
    assert_eq!(io_aliased("abc".to_owned()).unwrap(), 3);
    assert_eq!(maybe(None), None);
    assert_eq!(totals(vec![1, 2], HashMap::from([("x".to_owned(), 0.5)]))["x"], 1.5);

    for title in ["checked_div", "aliased", "io_aliased", "maybe", "totals"] {
        assert!(taskflow::task_def(title).is_some(), "`{title}` is registered");
    }
    // `Option` arguments are optional in the payload.
    let schema = taskflow::task_def("maybe").unwrap().args_schema();
    let required = schema.get("required").and_then(|r| r.as_array()).map(Vec::len).unwrap_or(0);
    assert_eq!(required, 0, "{schema}");
}
