//! Invocation: payloads are checked and deserialized, results serialized,
//! failures and panics reported.

use std::sync::Arc;

use serde_json::{Value, json};
use taskflow::{MemorySink, TaskContext, TaskError};

fn invoke(title: &str, payload: Value) -> Result<Value, TaskError> {
    let ctx = TaskContext::new("test");
    taskflow::task_def(title).expect("registered").invoke_blocking(&ctx, payload)
}

fn payload_error(title: &str, payload: Value) -> String {
    match invoke(title, payload) {
        Err(TaskError::Payload(error)) => error.to_string(),
        other => panic!("expected a payload error, got {other:?}"),
    }
}

fn sink_payload() -> Value {
    json!({
        "count": 3, "ratio": 0.5, "list": [{"x": 1, "y": 2}], "map": {"a": 1},
        "colour": "red", "point": {"x": 4, "y": 5}
    })
}

#[test]
fn a_good_payload_runs_with_defaults_applied() {
    assert_eq!(invoke("tests.kitchen_sink", sink_payload()).unwrap(), json!("3 0.5 false none None 1 1 Red 4,5"));
    let mut payload = sink_payload();
    payload["maybe"] = json!(7);
    payload["label"] = json!("given");
    payload["flag"] = json!(true);
    assert_eq!(invoke("tests.kitchen_sink", payload).unwrap(), json!("3 0.5 true given Some(7) 1 1 Red 4,5"));
}

#[test]
fn wrong_types_name_the_path_and_the_expectation() {
    let mut payload = sink_payload();
    payload["count"] = json!("x");
    assert_eq!(payload_error("tests.kitchen_sink", payload), r#"payload.count: expected integer, found string "x""#);

    let mut payload = sink_payload();
    payload["list"][0]["y"] = json!(1.5);
    assert_eq!(payload_error("tests.kitchen_sink", payload), "payload.list[0].y: expected integer, found number 1.5");

    let mut payload = sink_payload();
    payload["colour"] = json!("green");
    assert_eq!(
        payload_error("tests.kitchen_sink", payload),
        r#"payload.colour: expected one of "red", "blue", found string "green""#
    );

    let mut payload = sink_payload();
    payload["count"] = json!(300);
    assert_eq!(payload_error("tests.kitchen_sink", payload), "payload.count: expected a number <= 255, found 300");

    let mut payload = sink_payload();
    payload["map"] = json!({"a": -1});
    assert_eq!(payload_error("tests.kitchen_sink", payload), "payload.map.a: expected a number >= 0, found -1");
}

#[test]
fn missing_and_unknown_fields_are_errors() {
    let mut payload = sink_payload();
    payload.as_object_mut().unwrap().remove("point");
    assert_eq!(payload_error("tests.kitchen_sink", payload), "payload.point: required field is missing");

    let mut payload = sink_payload();
    payload["extra"] = json!(1);
    assert!(
        payload_error("tests.kitchen_sink", payload)
            .starts_with("payload.extra: unknown field; expected one of count, ratio"),
    );
    assert_eq!(payload_error("tests.unit", json!({"a": 1})), "payload.a: unknown field; this task takes no arguments");
    assert_eq!(payload_error("tests.unit", json!([])), "payload: expected object, found an array of 0 items");
}

#[test]
fn every_issue_is_reported_at_once() {
    let error = payload_error("tests.kitchen_sink", json!({"count": -1}));
    for expected in
        ["payload.count: expected a number >= 0", "payload.ratio: required field is missing", "payload.point: required"]
    {
        assert!(error.contains(expected), "{expected:?} not in {error:?}");
    }
}

#[test]
fn errors_and_panics_fail_the_run_with_their_message() {
    assert_eq!(invoke("tests.fails", json!({})), Err(TaskError::Failed { message: "disk on fire".into() }));
    assert_eq!(
        invoke("tests.panics", json!({"message": "kaboom"})),
        Err(TaskError::Panicked { message: "kaboom".into() })
    );
    assert_eq!(invoke("tests.async_panics", json!({})), Err(TaskError::Panicked { message: "async boom".into() }));
    assert_eq!(invoke("tests.fails", json!({})).unwrap_err().kind(), "failed");
}

#[test]
fn unit_and_async_results() {
    assert_eq!(invoke("tests.unit", json!({})).unwrap(), Value::Null);
    assert_eq!(invoke("tests.async_double", json!({"n": 21})).unwrap(), json!(42));
}

#[tokio::test]
async fn invoke_runs_async_tasks_on_the_callers_runtime() {
    let def = taskflow::task_def("tests.async_double").unwrap();
    let ctx = TaskContext::new("async");
    assert_eq!(def.invoke(&ctx, json!({"n": 4})).await.unwrap(), json!(8));
    let error = def.invoke(&ctx, json!({"n": "4"})).await.unwrap_err();
    assert_eq!(error.to_string(), r#"payload.n: expected integer, found string "4""#);
}

#[test]
fn log_lines_and_progress_belong_to_the_run() {
    let sink = Arc::new(MemorySink::default());
    let ctx = TaskContext::with_sink("run-7", 2, sink.clone());
    let def = taskflow::task_def("tests.echo_logged").unwrap();
    assert_eq!(def.invoke_blocking(&ctx, json!({"text": "hi"})).unwrap(), json!("hi"));
    let lines = sink.lines();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0].message, "echo hi");
    assert_eq!(lines[0].level, taskflow::Level::Info);
    assert_eq!(sink.last_progress(), Some(taskflow::Progress { done: 1, total: 1 }));
    assert_eq!(ctx.run_id(), "run-7");
    assert_eq!(ctx.attempt(), 2);
}

#[test]
fn the_function_stays_an_ordinary_function() {
    use crate::support::tasks;
    assert_eq!(
        tasks::kitchen_sink(
            1,
            0.0,
            true,
            "l".into(),
            None,
            vec![],
            Default::default(),
            tasks::Colour::Blue,
            tasks::Point { x: 0, y: 0 }
        )
        .unwrap(),
        "1 0 true l None 0 0 Blue 0,0"
    );
    let ctx = TaskContext::new("direct");
    assert_eq!(tasks::echo_logged(&ctx, "x".into()), "x");
}
