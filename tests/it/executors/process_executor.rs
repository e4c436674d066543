//! The process executor against real child processes of `executor_app`:
//! results, failures, panics, crashes, timeouts and cancels that kill the
//! whole process group, live logs, and the protocol's failure modes
//! (missing, malformed and oversized result frames).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use taskflow::executor::{ProcessExecutor, ProcessExecutorConfig};
use taskflow::{ExecutorKind, MemorySink, TaskContext, TaskError};

/// A hang guard, not a timing assertion.
const WAIT: Duration = Duration::from_secs(60);

pub fn worker() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_executor_app"))
}

fn executor_for(program: &Path) -> ProcessExecutor {
    let mut config = ProcessExecutorConfig::default();
    config.program = Some(program.to_path_buf());
    ProcessExecutor::new(config)
}

fn executor() -> ProcessExecutor {
    executor_for(&worker())
}

fn context() -> (TaskContext, Arc<MemorySink>) {
    let sink = Arc::new(MemorySink::default());
    (TaskContext::with_sink("run-under-test", 1, sink.clone()), sink)
}

async fn run_on(
    executor: &ProcessExecutor,
    title: &str,
    payload: Value,
) -> (Result<Value, TaskError>, Arc<MemorySink>) {
    let (ctx, sink) = context();
    let def = taskflow::task_def(title).unwrap();
    let result = tokio::time::timeout(WAIT, executor.execute(def, ctx, payload, None)).await.expect("no hang");
    (result, sink)
}

async fn run(title: &str, payload: Value) -> Result<Value, TaskError> {
    run_on(&executor(), title, payload).await.0
}

fn kind_and_message(result: Result<Value, TaskError>) -> (String, String) {
    let error = result.expect_err("the run fails");
    (error.kind().to_owned(), error.to_string())
}

/// Polls the sink until a line starting with `prefix` arrives.
async fn line_starting(sink: &MemorySink, prefix: &str) -> String {
    let found = tokio::time::timeout(WAIT, async {
        loop {
            if let Some(line) = sink.lines().into_iter().find(|l| l.message.starts_with(prefix)) {
                return line.message;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    found.await.expect("the line arrives while the worker runs")
}

fn alive(pid: u32) -> bool {
    // A zombie is dead too: it only waits for its parent.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.split(") ").nth(1).is_some_and(|rest| rest.starts_with('Z')),
        Err(_) => false,
    }
}

#[tokio::test]
async fn a_result_comes_back() {
    assert_eq!(run("exec.add", json!({"a": 2, "b": 3})).await.unwrap(), json!(5));
}

#[tokio::test]
async fn a_large_payload_goes_through() {
    let text = "y".repeat(4 << 20);
    assert_eq!(run("exec.len", json!({ "text": text })).await.unwrap(), json!(4 << 20));
}

#[tokio::test]
async fn an_err_fails_with_its_message() {
    let (kind, message) = kind_and_message(run("exec.fail", json!({"message": "no luck"})).await);
    assert_eq!((kind.as_str(), message.as_str()), ("failed", "no luck"));
}

#[tokio::test]
async fn a_panic_fails_with_the_panic_message() {
    let error = run("exec.panic", json!({})).await.unwrap_err();
    assert_eq!(error, TaskError::Panicked { message: "boom in the worker".to_owned() });
}

#[tokio::test]
async fn a_bad_payload_starts_no_worker() {
    let (kind, message) = kind_and_message(run("exec.add", json!({"a": "x", "b": 1})).await);
    assert_eq!(kind, "payload");
    assert!(message.contains("payload.a"), "{message}");
}

#[tokio::test]
async fn an_abort_says_which_signal_killed_the_worker() {
    let (kind, message) = kind_and_message(run("exec.abort", json!({})).await);
    assert_eq!(kind, "crashed");
    assert!(message.contains("killed by signal 6"), "{message}");
    assert!(message.contains("about to abort"), "the last output is quoted: {message}");
}

#[tokio::test]
async fn an_early_exit_says_its_code() {
    let (kind, message) = kind_and_message(run("exec.exit", json!({"code": 101})).await);
    assert_eq!(kind, "crashed");
    assert!(message.contains("exited with code 101 without a result"), "{message}");
}

#[tokio::test]
async fn running_out_of_memory_is_a_crash_that_says_so() {
    let (kind, message) = kind_and_message(run("exec.alloc_fail", json!({})).await);
    assert_eq!(kind, "crashed");
    assert!(message.contains("killed by signal 6"), "{message}");
    assert!(message.contains("memory allocation"), "{message}");
}

#[tokio::test]
async fn a_timeout_kills_the_worker() {
    let (ctx, sink) = context();
    let def = taskflow::task_def("exec.sleep").unwrap();
    let executor = executor();
    let run = executor.execute(def, ctx, json!({"millis": 600_000}), Some(Duration::from_millis(500)));
    let result = tokio::time::timeout(WAIT, run).await.expect("no hang");
    assert_eq!(result.unwrap_err().kind(), "timeout");
    let pid: u32 = line_starting(&sink, "pid ").await.trim_start_matches("pid ").parse().unwrap();
    assert!(!alive(pid), "the worker {pid} was killed");
}

#[tokio::test]
async fn a_cancel_kills_the_worker_and_logs_arrive_live() {
    let (ctx, sink) = context();
    let def = taskflow::task_def("exec.sleep").unwrap();
    let executor = executor();
    let running = {
        let ctx = ctx.clone();
        tokio::spawn(async move { executor.execute(def, ctx, json!({"millis": 600_000}), None).await })
    };
    // The worker's first line arrives while it still runs.
    let pid: u32 = line_starting(&sink, "pid ").await.trim_start_matches("pid ").parse().unwrap();
    assert!(alive(pid));
    ctx.cancel();
    let result = tokio::time::timeout(WAIT, running).await.expect("no hang").unwrap();
    assert_eq!(result.unwrap_err(), TaskError::Cancelled);
    assert!(!alive(pid), "the worker {pid} was killed");
}

#[tokio::test]
async fn log_lines_keep_their_level_and_progress_and_prints_are_logs() {
    let (result, sink) = run_on(&executor(), "exec.chatty", json!({"n": 3})).await;
    assert_eq!(result.unwrap(), json!(3));
    let lines: Vec<(String, String)> = sink.lines().into_iter().map(|l| (l.level.to_string(), l.message)).collect();
    for i in 0..3 {
        assert!(lines.contains(&("warn".to_owned(), format!("line {i}"))), "{lines:?}");
    }
    assert!(lines.contains(&("info".to_owned(), "printed, not a frame".to_owned())), "{lines:?}");
    let progress = sink.last_progress().unwrap();
    assert_eq!((progress.done, progress.total), (3, 3));
}

#[tokio::test]
async fn a_result_over_the_cap_is_a_clear_failure() {
    let mut config = ProcessExecutorConfig::default();
    config.program = Some(worker());
    config.max_result_bytes = 1024;
    let (result, _) = run_on(&ProcessExecutor::new(config), "exec.big", json!({"bytes": 100_000})).await;
    let (kind, message) = kind_and_message(result);
    assert_eq!(kind, "result_too_large");
    assert!(message.contains("1024 bytes"), "{message}");
}

/// A stand-in worker: a shell script in a fresh directory.
fn script(body: &str) -> (tempfile::TempDir, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("worker.sh");
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    (dir, path)
}

#[tokio::test]
async fn a_malformed_frame_is_a_clear_failure() {
    let (_dir, path) = script("cat >/dev/null; echo 'this is not a frame'");
    let (result, _) = run_on(&executor_for(&path), "exec.add", json!({"a": 1, "b": 2})).await;
    let (kind, message) = kind_and_message(result);
    assert_eq!(kind, "protocol");
    assert!(message.contains("this is not a frame"), "{message}");
}

#[tokio::test]
async fn a_missing_frame_is_a_clear_failure() {
    let (_dir, path) = script("cat >/dev/null; echo 'working…' >&2; exit 0");
    let (result, _) = run_on(&executor_for(&path), "exec.add", json!({"a": 1, "b": 2})).await;
    let (kind, message) = kind_and_message(result);
    assert_eq!(kind, "crashed");
    assert!(message.contains("exited with code 0 without a result"), "{message}");
}

#[tokio::test]
async fn what_a_worker_started_dies_with_it() {
    // The background `sleep` holds standard output open after the worker
    // exits; killing the process group ends it, so the run ends too.
    let (dir, path) =
        script("cat >/dev/null; sleep 600 & echo $! > \"$(dirname \"$0\")/child.pid\"; echo '{\"ok\": 7}'");
    let (result, _) = run_on(&executor_for(&path), "exec.add", json!({"a": 1, "b": 2})).await;
    assert_eq!(result.unwrap(), json!(7));
    let pid: u32 = std::fs::read_to_string(dir.path().join("child.pid")).unwrap().trim().parse().unwrap();
    // The kill is sent before the result is returned; the zombie may need a
    // moment to be reaped by init.
    let gone = tokio::time::timeout(WAIT, async {
        while alive(pid) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    gone.await.expect("the grandchild was killed");
}

#[tokio::test]
async fn a_frame_survives_a_stray_process_holding_stdout_open() {
    // `setsid` leaves the process group, so the kill at the end misses it:
    // the read of stdout is abandoned after a grace period, keeping the frame.
    let (dir, path) =
        script("cat >/dev/null; setsid sleep 600 & echo $! > \"$(dirname \"$0\")/stray.pid\"; echo '{\"ok\": 8}'");
    let (result, _) = run_on(&executor_for(&path), "exec.add", json!({"a": 1, "b": 2})).await;
    let pid = std::fs::read_to_string(dir.path().join("stray.pid")).unwrap();
    let _ = std::process::Command::new("kill").arg(pid.trim()).status();
    assert_eq!(result.unwrap(), json!(8));
}

#[tokio::test]
async fn a_missing_program_is_a_clear_failure() {
    let (result, _) =
        run_on(&executor_for(Path::new("/nonexistent/worker")), "exec.add", json!({"a": 1, "b": 2})).await;
    let (kind, message) = kind_and_message(result);
    assert_eq!(kind, "worker_spawn");
    assert!(message.contains("/nonexistent/worker"), "{message}");
}

#[tokio::test]
async fn availability_lists_every_executor() {
    let all = taskflow::executor::availability().await;
    let kinds: Vec<ExecutorKind> = all.iter().map(|a| a.kind).collect();
    assert_eq!(kinds, [ExecutorKind::Thread, ExecutorKind::Process, ExecutorKind::Docker]);
    assert!(all[0].available && all[1].available, "{all:?}");
    assert!(!all[2].detail.is_empty());
}

/// Through the engine: a run submitted for the process executor is claimed,
/// executed in a child, and its logs are stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_runs_process_runs() {
    use taskflow::client::{Client, SubmitOptions};
    use taskflow::engine::{Engine, EngineConfig};
    use taskflow::store::SqliteStore;

    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open_in(dir.path()).unwrap());
    let mut config = EngineConfig::default();
    config.poll_interval = Duration::from_millis(50);
    config.process.program = Some(worker());
    let engine = Engine::start(store, config).unwrap();
    let availability = engine.availability().await;
    assert!(availability[1].available && availability[1].detail.contains("executor_app"), "{availability:?}");
    let client = Client::new(engine);
    let mut options = SubmitOptions::default();
    options.executor = Some(ExecutorKind::Process);
    let run = client.submit_with("exec.chatty", json!({"n": 2}), options.clone()).await.unwrap();
    assert_eq!(run.executor, ExecutorKind::Process);
    let done = client.wait(run.id, WAIT).await.unwrap();
    assert_eq!(done.result, Some(json!(2)), "{done:?}");
    // Lines are stored by the engine's log writer, in batches: poll.
    let stored = tokio::time::timeout(WAIT, async {
        loop {
            let logs = client.logs(run.id, 0, 1000).await.unwrap();
            if logs.iter().any(|l| l.message == "line 1") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    stored.await.expect("the worker's lines are stored");

    // A task whose `executor` option is `process` goes there by default.
    let run = client.submit("exec.whoami", json!({})).await.unwrap();
    assert_eq!(run.executor, ExecutorKind::Process);
    let done = client.wait(run.id, WAIT).await.unwrap();
    let pid = done.result.as_ref().and_then(Value::as_u64).expect("a pid");
    assert_ne!(pid, u64::from(std::process::id()), "it ran in a child");

    let crashed = client.submit_with("exec.exit", json!({"code": 3}), options).await.unwrap();
    let done = client.wait(crashed.id, WAIT).await.unwrap();
    let error = done.error.expect("the run failed");
    assert_eq!(error.kind, "crashed");
    assert!(error.message.contains("exited with code 3"), "{}", error.message);
}
