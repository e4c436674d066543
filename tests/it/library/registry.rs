//! The registry: every task linked in is listed, described and found.

use serde_json::json;
use std::time::Duration;
use taskflow::ExecutorKind;

#[test]
fn lists_every_task_sorted_by_title() {
    let titles: Vec<&str> = taskflow::tasks().map(|def| def.title()).collect();
    for expected in ["tests.kitchen_sink", "tests.async_double", "tests.echo_logged", "tests.unit"] {
        assert!(titles.contains(&expected), "{expected} missing from {titles:?}");
    }
    let mut sorted = titles.clone();
    sorted.sort();
    assert_eq!(titles, sorted);
    assert!(taskflow::registry::check().is_ok());
}

#[test]
fn finds_a_task_and_describes_it() {
    let def = taskflow::task_def("tests.kitchen_sink").expect("registered");
    assert_eq!(def.description(), "Every kind of argument");
    assert_eq!(def.module_path(), "it::support::tasks");
    assert!(def.file().ends_with("tasks.rs"), "{}", def.file());
    assert!(def.line() > 0);
    assert!(!def.is_async());
    assert_eq!(
        def.signature(),
        "kitchen_sink(count: u8, ratio: f64, flag: bool, label: String, maybe: Option<i64>, list: Vec<Point>, map: HashMap<String, u32>, colour: Colour, point: Point) -> Result<String, String>"
    );
    let options = def.options();
    assert_eq!(options.retries, 3);
    assert_eq!(options.timeout, Some(Duration::from_secs(5400)));
    assert_eq!(options.executor, ExecutorKind::Thread);
    assert_eq!(options.tags, ["test", "shapes"]);
    assert_eq!(options.retry_delay, Duration::from_secs(1), "the default back-off base");
    assert_eq!(options.concurrency, None);
    let limited = taskflow::task_def("tests.limited").unwrap().options();
    assert_eq!((limited.concurrency, limited.retry_delay), (Some(1), Duration::from_millis(10)));
    assert!(taskflow::task_def("no.such.task").is_none());

    let nested = taskflow::task_def("tests.async_double").unwrap();
    assert!(nested.is_async());
    assert_eq!(nested.module_path(), "it::support::tasks::nested::deeper");
    assert_eq!(nested.signature(), "async async_double(n: i64) -> i64");
}

#[test]
fn the_context_is_not_part_of_the_schema() {
    let def = taskflow::task_def("tests.echo_logged").unwrap();
    let schema = def.args_schema();
    assert_eq!(schema["properties"].as_object().unwrap().keys().collect::<Vec<_>>(), ["text"]);
    assert_eq!(def.signature(), "echo_logged(text: String) -> String");
}

#[test]
fn args_schema_has_properties_required_descriptions_defaults_and_defs() {
    let schema = taskflow::task_def("tests.kitchen_sink").unwrap().args_schema();
    assert_eq!(schema["type"], "object");
    assert_eq!(schema["title"], "tests.kitchen_sink");
    assert_eq!(schema["description"], "Every kind of argument");
    assert_eq!(schema["additionalProperties"], false);
    let properties = schema["properties"].as_object().unwrap();
    // Declaration order is kept, so forms show arguments as written.
    assert_eq!(
        properties.keys().collect::<Vec<_>>(),
        ["count", "ratio", "flag", "label", "maybe", "list", "map", "colour", "point"]
    );
    assert_eq!(properties["count"]["description"], "how many");
    assert_eq!(properties["count"]["type"], "integer");
    assert_eq!(properties["count"]["maximum"], 255);
    assert_eq!(properties["ratio"]["type"], "number");
    assert_eq!(properties["label"]["default"], "none");
    assert_eq!(properties["flag"]["default"], false);
    assert_eq!(properties["list"]["type"], "array");
    assert_eq!(properties["map"]["type"], "object");
    assert_eq!(properties["point"]["description"], "where");
    // Defaults and `Option`s are not required; the rest are.
    assert_eq!(schema["required"], json!(["count", "ratio", "list", "map", "colour", "point"]));
    // The user's types live under `$defs`, with their doc comments.
    assert_eq!(schema["$defs"]["Point"]["properties"]["x"]["description"], "Horizontal");
    assert!(schema["$defs"]["Colour"].is_object(), "{schema:#}");
}

#[test]
fn output_schemas() {
    let output = |title: &str| taskflow::task_def(title).unwrap().output_schema().clone();
    assert_eq!(output("tests.kitchen_sink")["type"], "string");
    assert_eq!(output("tests.async_double")["type"], "integer");
    assert_eq!(output("tests.unit")["type"], "null");
    assert_eq!(output("tests.fails")["type"], "null");
}
