//! The user crate's tasks are registered and run, whatever module they are in.

use taskflow::TaskContext;

#[test]
fn tasks_from_every_module_are_registered() {
    let titles: Vec<&str> = taskflow::tasks().map(|def| def.title()).collect();
    assert_eq!(titles, ["change_case", "sum", "user.count_words"]);
    assert_eq!(taskflow::task_def("sum").unwrap().module_path(), "taskflow_user_crate::bare");
    assert_eq!(taskflow::task_def("change_case").unwrap().module_path(), "taskflow_user_crate::text::words");
}

#[test]
fn tasks_run_through_the_registry() {
    let ctx = TaskContext::new("user");
    let run = |title: &str, payload: &str| {
        let payload = serde_json_from(payload);
        taskflow::task_def(title).unwrap().invoke_blocking(&ctx, payload)
    };
    assert_eq!(run("change_case", r#"{"word": "Hi", "case": "Upper"}"#).unwrap(), "HI");
    assert_eq!(run("sum", r#"{"numbers": [1, 2, 3]}"#).unwrap(), 6);
    assert_eq!(run("sum", r#"{"numbers": [1], "start": 10}"#).unwrap(), 11);
    assert_eq!(run("user.count_words", r#"{"text": "a b c"}"#).unwrap(), 3);
    let error = run("change_case", r#"{"word": "Hi", "case": "Title"}"#).unwrap_err();
    assert_eq!(error.to_string(), r#"payload.case: expected one of "Upper", "Lower", found string "Title""#);
}

#[test]
fn the_functions_stay_ordinary() {
    use taskflow_user_crate::{bare, text::words};
    assert_eq!(bare::sum(vec![2, 3], None), 5);
    assert_eq!(words::change_case("Ab".into(), words::Case::Lower), "ab");
}

/// The user crate has no `serde_json` of its own; reach it through taskflow's
/// private re-export only here, in a test.
fn serde_json_from(text: &str) -> taskflow::__private::Value {
    taskflow::__private::serde_json::from_str(text).unwrap()
}
