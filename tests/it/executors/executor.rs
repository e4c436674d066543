//! The thread executor: results, timeouts, cancellation and the
//! concurrency limit.

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::json;
use taskflow::executor::{ThreadExecutor, ThreadExecutorConfig};
use taskflow::{TaskContext, TaskError};

use crate::support::tasks::{INSIDE, MOST_INSIDE};

fn def(title: &str) -> &'static taskflow::TaskDef {
    taskflow::task_def(title).expect("registered")
}

#[tokio::test]
async fn runs_sync_and_async_tasks() {
    let executor = ThreadExecutor::default();
    let sync = executor.execute(def("tests.echo_logged"), TaskContext::new("a"), json!({"text": "t"}), None).await;
    assert_eq!(sync.unwrap(), json!("t"));
    let asynchronous = executor.execute(def("tests.async_double"), TaskContext::new("b"), json!({"n": 5}), None).await;
    assert_eq!(asynchronous.unwrap(), json!(10));
}

#[tokio::test]
async fn rejects_a_bad_payload_before_running() {
    let result =
        ThreadExecutor::default().execute(def("tests.async_double"), TaskContext::new("c"), json!({}), None).await;
    assert!(matches!(result, Err(TaskError::Payload(_))), "{result:?}");
}

#[tokio::test]
async fn panics_become_failures_and_the_executor_goes_on() {
    let executor = ThreadExecutor::default();
    let result = executor.execute(def("tests.panics"), TaskContext::new("d"), json!({"message": "m"}), None).await;
    assert_eq!(result, Err(TaskError::Panicked { message: "m".into() }));
    let result = executor.execute(def("tests.async_panics"), TaskContext::new("e"), json!({}), None).await;
    assert_eq!(result, Err(TaskError::Panicked { message: "async boom".into() }));
    let after = executor.execute(def("tests.async_double"), TaskContext::new("f"), json!({"n": 1}), None).await;
    assert_eq!(after.unwrap(), json!(2));
}

#[tokio::test]
async fn a_sync_task_times_out_and_sees_the_cancellation() {
    let ctx = TaskContext::new("g");
    let result = ThreadExecutor::default()
        .execute(def("tests.spin_until_cancelled"), ctx.clone(), json!({}), Some(Duration::from_millis(50)))
        .await;
    assert_eq!(result, Err(TaskError::TimedOut { after: Duration::from_millis(50) }));
    assert!(ctx.is_cancelled(), "the timeout cancels the context so the thread can stop");
}

#[tokio::test]
async fn an_async_task_times_out_by_its_own_option() {
    let result =
        ThreadExecutor::default().execute(def("tests.async_sleep"), TaskContext::new("h"), json!({}), None).await;
    assert_eq!(result, Err(TaskError::TimedOut { after: Duration::from_millis(50) }));
}

#[tokio::test]
async fn cancelling_the_context_ends_the_run() {
    let ctx = TaskContext::new("i");
    let executor = ThreadExecutor::default();
    let run = tokio::spawn({
        let ctx = ctx.clone();
        async move { executor.execute(def("tests.spin_until_cancelled"), ctx, json!({}), None).await }
    });
    ctx.cancel();
    assert_eq!(run.await.unwrap(), Err(TaskError::Cancelled));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_runs_more_than_the_limit_at_once() {
    let executor = ThreadExecutor::new(ThreadExecutorConfig::with_max_concurrency(2));
    assert_eq!(executor.config().max_concurrency, 2);
    let runs: Vec<_> = (0..8)
        .map(|i| {
            let executor = executor.clone();
            tokio::spawn(async move {
                executor.execute(def("tests.gate"), TaskContext::new(format!("gate-{i}")), json!({}), None).await
            })
        })
        .collect();
    for run in runs {
        let inside = run.await.unwrap().unwrap();
        assert!(inside.as_u64().unwrap() <= 2, "{inside}");
    }
    assert!(MOST_INSIDE.load(Ordering::SeqCst) <= 2);
    assert_eq!(INSIDE.load(Ordering::SeqCst), 0);
}
