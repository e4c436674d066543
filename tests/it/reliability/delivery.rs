//! Delivery over the real server process: a submit acknowledged before a
//! `SIGKILL` is there after the restart, exactly once; concurrent submits
//! with one idempotency key make one run; `SIGTERM` hands runs still going
//! back to the queue and claims nothing new; a poison run stops after its
//! attempts while the server stays healthy; the containers of a killed
//! server are removed by the next one, which retries their runs; a forced
//! delete kills a process run; every attempt of a retried run is on
//! record; `serve` warns when its Docker tasks cannot reach Docker.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::server::{Server, runs_in_full, wait_final};

const APP: &str = env!("CARGO_BIN_EXE_reliability_app");

/// Every run in the store, in full, through the API.
async fn all_runs(server: &Server) -> Vec<Value> {
    let mut runs = Vec::new();
    loop {
        let page = server.get_json(&format!("/api/v1/tasks?limit=500&offset={}", runs.len())).await;
        let items = page["items"].as_array().unwrap().clone();
        if items.is_empty() {
            return runs_in_full(&reqwest::Client::new(), &server.url, &server.token, &runs).await;
        }
        runs.extend(items);
    }
}

/// `start`/`done` lines of the effect log: (what, run id, attempt).
fn effects(server: &Server) -> Vec<(String, String, u32)> {
    let text = std::fs::read_to_string(server.data_dir.join("effects.log")).unwrap_or_default();
    text.lines()
        .map(|line| {
            let mut parts = line.split(' ');
            let what = parts.next().unwrap().to_owned();
            let id = parts.next().unwrap().to_owned();
            (what, id, parts.next().unwrap().parse().unwrap())
        })
        .collect()
}

#[tokio::test]
async fn acknowledged_submits_survive_a_sigkill_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_in(APP, dir.path(), &[], &[]);
    let client = server.client();
    let (acked_tx, mut acked_rx) = tokio::sync::mpsc::unbounded_channel::<(u32, String)>();
    let mut submits = Vec::new();
    for n in 0..200u32 {
        let client = client.clone();
        let url = server.at("/api/v1/tasks");
        let acked = acked_tx.clone();
        submits.push(tokio::spawn(async move {
            // Delayed an hour: the runs wait in the store, so what is
            // counted is what was stored, not what ran.
            let body = json!({"task_title": "effect", "payload": {"n": n, "millis": 1}, "delay_seconds": 3600, "unique": false});
            if let Ok(response) = client.post(url).json(&body).send().await
                && response.status().is_success()
                && let Ok(run) = response.json::<Value>().await
            {
                let _ = acked.send((n, run["task_id"].as_str().unwrap().to_owned()));
            }
        }));
    }
    drop(acked_tx);
    let mut acked = HashMap::new();
    while let Some((n, id)) = acked_rx.recv().await {
        acked.insert(id, n);
        if acked.len() == 100 {
            break;
        }
    }
    server.kill();
    for submit in submits {
        let _ = submit.await;
    }
    while let Ok((n, id)) = acked_rx.try_recv() {
        acked.insert(id, n);
    }
    assert!(acked.len() >= 100);

    let server = Server::start_in(APP, dir.path(), &[], &[]);
    let runs = all_runs(&server).await;
    let mut seen = HashSet::new();
    for run in &runs {
        let id = run["task_id"].as_str().unwrap();
        assert!(seen.insert(id.to_owned()), "run {id} is stored once");
        // None half-created: each stored run is whole.
        assert_eq!(run["task_title"], "effect");
        assert_eq!(run["status"], "pending", "{run}");
        assert!(run["payload"]["n"].as_u64().is_some_and(|n| n < 200), "{run}");
    }
    for (id, n) in &acked {
        let run = runs.iter().find(|r| r["task_id"] == id.as_str());
        let run = run.unwrap_or_else(|| panic!("acknowledged run {id} (n = {n}) was lost"));
        assert_eq!(run["payload"]["n"], *n, "the run holds its own payload");
    }
    let payloads: HashSet<u64> = runs.iter().map(|r| r["payload"]["n"].as_u64().unwrap()).collect();
    assert_eq!(payloads.len(), runs.len(), "no submit was stored twice");
}

#[tokio::test]
async fn one_idempotency_key_sent_twenty_times_at_once_makes_one_run() {
    let server = Server::start_binary(APP, &[], &[]);
    let client = server.client();
    let body = json!({"task_title": "effect", "payload": {"n": 7, "millis": 1}, "delay_seconds": 3600});
    let sends: Vec<_> = (0..20)
        .map(|_| {
            let request = client.post(server.at("/api/v1/tasks")).header("idempotency-key", "charge-42").json(&body);
            tokio::spawn(async move {
                let response = request.send().await.unwrap();
                (response.status(), response.text().await.unwrap())
            })
        })
        .collect();
    let mut answers = Vec::new();
    for send in sends {
        answers.push(send.await.unwrap());
    }
    assert!(answers.iter().all(|(status, _)| *status == StatusCode::ACCEPTED), "{answers:?}");
    assert!(answers.iter().all(|a| a.1 == answers[0].1), "twenty identical answers: {answers:?}");
    assert_eq!(all_runs(&server).await.len(), 1, "one run");

    let other = json!({"task_title": "effect", "payload": {"n": 8, "millis": 1}});
    let response = client
        .post(server.at("/api/v1/tasks"))
        .header("idempotency-key", "charge-42")
        .json(&other)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CONFLICT, "the key with another body");
}

#[tokio::test]
async fn sigterm_claims_nothing_new_and_hands_back_runs_still_going() {
    let dir = tempfile::tempdir().unwrap();
    let grace = 2; // the harness starts every server with `--grace 2`
    let server = Server::start_in(APP, dir.path(), &["--max-concurrency", "5"], &[]);
    let client = server.client();
    let mut ids = Vec::new();
    for n in 0..7 {
        let body = json!({"task_title": "effect", "payload": {"n": n, "millis": 60_000}, "unique": false});
        let run: Value =
            client.post(server.at("/api/v1/tasks")).json(&body).send().await.unwrap().json().await.unwrap();
        ids.push(run["task_id"].as_str().unwrap().to_owned());
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while effects(&server).len() < 5 {
        assert!(Instant::now() < deadline, "five runs never started: {:?}", effects(&server));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let started: HashSet<String> = effects(&server).into_iter().map(|(_, id, _)| id).collect();
    let data_dir = server.data_dir.clone();
    let mut child = server.terminate();
    // Bounded: the grace period, then the hand-back, then the exit.
    let deadline = Instant::now() + Duration::from_secs(grace + 5);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "serve did not exit within grace + 5 s");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
    let after: Vec<(String, String, u32)> = {
        let text = std::fs::read_to_string(data_dir.join("effects.log")).unwrap();
        text.lines()
            .map(|l| {
                let p: Vec<&str> = l.split(' ').collect();
                (p[0].to_owned(), p[1].to_owned(), p[2].parse().unwrap())
            })
            .collect()
    };
    assert_eq!(after.len(), 5, "nothing new was claimed after SIGTERM, none finished: {after:?}");

    // Read the store with no engine on it: every run is pending again, on
    // its first attempt (a hand-back is not an attempt).
    for id in &ids {
        let output =
            std::process::Command::new(APP).arg("--data-dir").arg(&data_dir).args(["status", id]).output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let run: Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(run["status"], "pending", "{run}");
        assert_eq!(run["attempt"], 1, "{run}");
        assert!(!started.contains(id) || run["worker_id"].is_null(), "its lease is released: {run}");
    }
}

#[tokio::test]
async fn a_poison_run_stops_after_its_attempts_and_health_stays_fine() {
    let server = Server::start_binary(APP, &[], &[]);
    let client = server.client();
    let run: Value = server.submit(json!({"task_title": "always_panics", "payload": {}})).await;
    let id = run["task_id"].as_str().unwrap().to_owned();
    let waiting = {
        let client = client.clone();
        let server_url = server.at("");
        tokio::spawn(async move {
            // /health answers all the while.
            for _ in 0..20 {
                let response = client.get(format!("{server_url}/health")).send().await.unwrap();
                assert_eq!(response.status(), StatusCode::OK);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let done = wait_final(&client, &server, &id).await;
    waiting.await.unwrap();
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(done["attempt"], 3, "exactly three attempts: {done}");
    assert_eq!(done["error"]["kind"], "panicked");
    assert!(done["error"]["message"].as_str().unwrap().contains("poisoned on purpose"), "{done}");
}

/// Ids of the running containers of `reliability_app`'s runs.
fn app_containers(all: bool) -> Vec<String> {
    let mut args = vec!["ps", "-q", "--filter", "label=taskflow.app=reliability_app", "--filter", "label=taskflow.run"];
    if all {
        args.insert(1, "-a");
    }
    let output = std::process::Command::new("docker").args(&args).output().unwrap();
    String::from_utf8_lossy(&output.stdout).lines().map(str::to_owned).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_of_a_killed_server_are_removed_and_their_runs_retried() {
    let dir = tempfile::tempdir().unwrap();
    let timings = ["--lease-seconds", "5", "--heartbeat-seconds", "1", "--rescue-seconds", "1"];
    let server = Server::start_in(APP, dir.path(), &timings, &[]);
    let health = server.get_json("/health").await;
    let docker = health["executors"].as_array().unwrap().iter().find(|e| e["name"] == "docker").unwrap().clone();
    if docker["available"] != true {
        assert!(std::env::var_os("TASKFLOW_REQUIRE_DOCKER").is_none(), "Docker is required here: {docker}");
        println!("SKIPPED: no Docker engine: {}", docker["detail"]);
        return;
    }
    let mut ids = Vec::new();
    for n in 0..3 {
        let run = server
            .submit(json!({"task_title": "wait_long", "payload": {"millis": 120_000 + n}, "executor": "docker"}))
            .await;
        ids.push(run["task_id"].as_str().unwrap().to_owned());
    }
    // The first run builds the worker image.
    let deadline = Instant::now() + Duration::from_secs(240);
    while app_containers(false).len() < 3 {
        assert!(Instant::now() < deadline, "three containers never ran");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let orphans = app_containers(true);
    server.kill();
    assert!(!app_containers(true).is_empty(), "a SIGKILL leaves the containers behind");

    let server = Server::start_in(APP, dir.path(), &timings, &[]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while app_containers(true).iter().any(|c| orphans.contains(c)) {
        assert!(Instant::now() < deadline, "the dead server's containers were never removed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for id in &ids {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let run = server.get_json(&format!("/api/v1/tasks/{id}")).await;
            if run["attempt"].as_u64().unwrap() >= 2 {
                assert!(run["status"] == "running" || run["status"] == "pending", "{run}");
                break;
            }
            assert!(Instant::now() < deadline, "run {id} was never retried: {run}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let response = server.client().post(server.at(&format!("/api/v1/tasks/{id}/cancel"))).send().await.unwrap();
        assert!(response.status().is_success() || response.status() == StatusCode::CONFLICT);
    }
    drop(server);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !app_containers(true).is_empty() {
        assert!(Instant::now() < deadline, "containers left after the server stopped: {:?}", app_containers(true));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A forced delete of a running run stops it before it deletes it: a run on
/// the process executor is killed, so its effect never happens (a sync task
/// on a thread can only be told to stop; `effect` ignores that, which is why
/// hard cancellation is the process executor's).
#[tokio::test]
async fn a_forced_delete_kills_a_process_run_before_its_effect() {
    let server = Server::start_binary(APP, &[], &[]);
    let body = json!({"task_title": "effect", "payload": {"n": 0, "millis": 60_000}, "executor": "process"});
    let run: Value = server.submit(body).await;
    let id = run["task_id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(60);
    let pid = loop {
        let text = std::fs::read_to_string(server.data_dir.join("effects.log")).unwrap_or_default();
        let started = text.lines().find(|line| line.starts_with(&format!("start {id} ")));
        if let Some(pid) = started.and_then(|line| line.split(' ').nth(3)) {
            break pid.to_owned();
        }
        assert!(Instant::now() < deadline, "the run never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let response = server.client().delete(server.at(&format!("/api/v1/tasks/{id}?force=true"))).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    // Bounded well under the run's 60 s: the worker process is killed.
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        assert!(Instant::now() < deadline, "the deleted run's worker process {pid} still runs");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let effects = effects(&server);
    assert!(!effects.iter().any(|(what, run, _)| what == "done" && *run == id), "{effects:?}");
    let response = server.client().get(server.at(&format!("/api/v1/tasks/{id}"))).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

/// A retried run keeps every attempt on record (issue 22): the run
/// resource lists each with its number, outcome, worker, executor, times
/// and error, the log says why each failed and when the next follows, and
/// the run page shows them.
#[tokio::test]
async fn every_attempt_of_a_retried_run_is_on_record() {
    let server = Server::start_binary(APP, &[], &[]);
    let client = server.client();
    let run: Value = server.submit(json!({"task_title": "churn", "payload": {"n": 7, "millis": 0, "fail": 2}})).await;
    let id = run["task_id"].as_str().unwrap().to_owned();
    let done = wait_final(&client, &server, &id).await;
    assert_eq!((done["status"].as_str(), done["attempt"].as_u64()), (Some("completed"), Some(3)), "{done}");
    let attempts = done["attempts"].as_array().unwrap();
    let outcomes: Vec<(u64, &str)> =
        attempts.iter().map(|a| (a["number"].as_u64().unwrap(), a["outcome"].as_str().unwrap())).collect();
    assert_eq!(outcomes, [(1, "failed"), (2, "failed"), (3, "completed")], "{done}");
    for (n, attempt) in attempts.iter().enumerate() {
        assert_eq!(attempt["executor"], "thread");
        assert!(attempt["worker_id"].as_str().is_some_and(|w| !w.is_empty()), "{attempt}");
        assert!(attempt["started_at"].is_string() && attempt["finished_at"].is_string(), "{attempt}");
        if n < 2 {
            let message = format!("failing attempt {} of 2 on purpose", n + 1);
            assert_eq!(attempt["error"]["message"], message.as_str(), "{attempt}");
        } else {
            assert!(attempt["error"].is_null(), "{attempt}");
        }
    }

    // Log lines are stored on their own path, a moment after the outcome.
    let prefixes: Vec<String> = (1..=2)
        .map(|n| format!("attempt {n} of 6 failed: failing attempt {n} of 2 on purpose; retrying in "))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let logs = server.get_json(&format!("/api/v1/tasks/{id}/logs")).await;
        let lines: Vec<String> =
            logs["items"].as_array().unwrap().iter().map(|l| l["message"].as_str().unwrap().to_owned()).collect();
        if prefixes.iter().all(|prefix| lines.iter().any(|l| l.starts_with(prefix.as_str()))) {
            break;
        }
        assert!(Instant::now() < deadline, "the log lacks a line per failed attempt: {lines:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let page = client.get(server.at(&format!("/runs/{id}"))).send().await.unwrap().text().await.unwrap();
    for n in 1..=3 {
        assert!(page.contains(&format!("<tr data-number=\"{n}\">")), "attempt {n} is not on the run page");
    }
}

/// A server whose tasks run on Docker says at start when it cannot reach
/// Docker (issue 22): their runs would otherwise wait and fail with
/// nothing at start to say why. With Docker reachable it says nothing.
#[tokio::test]
async fn serve_warns_at_start_when_a_docker_task_cannot_reach_docker() {
    let unreachable = Server::start_binary(APP, &[], &[("DOCKER_HOST", "tcp://127.0.0.1:9")]);
    let warning = unreachable.banner.lines().find(|l| l.starts_with("Warning:")).unwrap_or_else(|| {
        panic!("no warning in the banner: {}", unreachable.banner);
    });
    assert!(warning.contains("1 task runs on Docker (in_a_container)"), "{warning}");
    assert!(warning.contains("127.0.0.1:9") && warning.contains("docker_unavailable"), "{warning}");
    drop(unreachable);
    if std::env::var_os("TASKFLOW_REQUIRE_DOCKER").is_some() {
        let reachable = Server::start_binary(APP, &[], &[]);
        assert!(!reachable.banner.contains("Warning:"), "{}", reachable.banner);
    }
}
