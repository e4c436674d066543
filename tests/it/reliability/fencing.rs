//! Attempt fencing with real processes: two servers share one PostgreSQL
//! database; the one running a run's first attempt is stopped with
//! `SIGSTOP`, its lease expires, the other rescues the run and completes a
//! second attempt. Resumed with `SIGCONT`, the stopped server finishes its
//! stale attempt and reports it: the store refuses the report and the run
//! stays exactly as the second attempt left it. (The store's own fencing,
//! with an injected clock, is `store::conformance`; over the HTTP port the
//! same refusal is a 409.)

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use taskflow::store::PostgresStore;

use crate::support::server::Server;

const APP: &str = env!("CARGO_BIN_EXE_reliability_app");

fn signal(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill").args([signal, &pid.to_string()]).status().unwrap();
    assert!(status.success(), "kill {signal} {pid}");
}

fn effects(dir: &std::path::Path) -> String {
    std::fs::read_to_string(dir.join("effects.log")).unwrap_or_default()
}

async fn wait_for(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done().await {
        assert!(Instant::now() < deadline, "waited 60 s for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_servers_late_outcome_is_refused_and_changes_nothing() {
    let Some(admin) = crate::support::backends::postgres_server() else { return };
    let url = PostgresStore::create_test_database(&admin).await.expect("a fresh test database");
    let dir = tempfile::tempdir().unwrap();
    // The test timings: leases of 5 s, renewed every second.
    let timings = ["--lease-seconds", "5", "--heartbeat-seconds", "1", "--rescue-seconds", "1"];
    let env = [("TASKFLOW_DATABASE_URL", url.as_str())];
    let log_path = dir.path().join("stopped-server.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let stopped = Server::start_with_stderr(APP, dir.path(), &timings, &env, log);

    // The first server claims the run (the second is not up yet).
    let body = json!({"task_title": "effect", "payload": {"n": 7, "millis": 3_000}, "unique": false});
    let id = stopped.submit(body).await["task_id"].as_str().unwrap().to_owned();
    let started = format!("start {id} 1 {}\n", stopped.pid());
    wait_for("the first attempt to start", async || effects(dir.path()).contains(&started)).await;
    let first: Value = stopped.get_json(&format!("/api/v1/tasks/{id}")).await;
    assert_eq!(first["attempt"], 1, "{first}");

    let rescuer = Server::start_in(APP, dir.path(), &timings, &env);
    signal(stopped.pid(), "-STOP");

    // The lease runs out; the other server re-queues the run and completes
    // its second attempt.
    let path = format!("/api/v1/tasks/{id}");
    wait_for("the second attempt to complete", async || rescuer.get_json(&path).await["status"] == "completed").await;
    let settled = rescuer.get_json(&path).await;
    assert_eq!(settled["attempt"], 2, "{settled}");
    assert_ne!(settled["worker_id"], first["worker_id"], "another worker completed it: {settled}");

    // Resumed, the stopped server ends its stale attempt and reports it.
    signal(stopped.pid(), "-CONT");
    let finished = format!("done {id} 1 {}\n", stopped.pid());
    wait_for("the stale attempt to finish", async || effects(dir.path()).contains(&finished)).await;
    let refusal = format!("run {id}: attempt 1 of worker");
    wait_for("the stale report to be refused", async || std::fs::read_to_string(&log_path).unwrap().contains(&refusal))
        .await;

    let after = rescuer.get_json(&path).await;
    assert_eq!(after, settled, "the stale report changed nothing");
    let lines: Vec<String> = effects(dir.path()).lines().map(str::to_owned).collect();
    let (first, second) = (stopped.pid(), rescuer.pid());
    assert_eq!(
        lines,
        [
            format!("start {id} 1 {first}"),
            format!("start {id} 2 {second}"),
            format!("done {id} 2 {second}"),
            format!("done {id} 1 {first}")
        ],
        "each attempt ran once, in its own server; the second finished first"
    );
    drop((stopped, rescuer));
    let _ = PostgresStore::drop_test_database(&admin, &url).await;
}
