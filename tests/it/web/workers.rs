//! Remote workers' registration, end to end: `worker-token create` on the
//! server's data directory, `POST /api/v1/polling/register` with the
//! provision token it printed, `GET /api/v1/workers`.

use std::process::Command;

use reqwest::StatusCode;
use serde_json::{Value, json};
use taskflow::web::polling::tokens::schema_digest;

use crate::support::backends::{Backend, on_every_backend};
use crate::support::server::Server;

const APP: &str = env!("CARGO_BIN_EXE_simple_tasks");

/// `worker-token create` on the server's data directory: the token, or
/// the command's exit code and standard error.
fn provision(server: &Server, args: &[&str]) -> Result<String, (Option<i32>, String)> {
    let output = Command::new(APP)
        .arg("--data-dir")
        .arg(&server.data_dir)
        .envs(server.env.iter().map(|(k, v)| (k, v)))
        .args(["worker-token", "create"])
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if output.status.success() {
        Ok(String::from_utf8(output.stdout).unwrap().trim().to_owned())
    } else {
        Err((output.status.code(), stderr))
    }
}

#[tokio::test]
async fn a_worker_registers_once_with_its_provision_token() {
    let server = Server::start(&[]);
    let http = reqwest::Client::new();
    let token = provision(&server, &["--name", "build-box", "--ttl", "1h"]).unwrap();
    assert!(token.starts_with("tfp_"), "{token}");

    // The digest of a task's arguments, as the server publishes them.
    let add = server.get_json("/api/v1/functions/add_numbers").await;
    let digest = schema_digest(&add["args_schema"]);
    let body = |provision_token: &str| {
        json!({
            "provision_token": provision_token,
            "protocol_version": 1,
            "host": "build-1",
            "version": "0.1.0",
            "executors": ["thread", "process"],
            "tasks": [
                {"title": "add_numbers", "schema_digest": digest},
                {"title": "sleep_for_seconds", "schema_digest": "0".repeat(64)},
                {"title": "not_here", "schema_digest": digest},
            ],
        })
    };
    let post = |body: Value| {
        let request = http.post(server.at("/api/v1/polling/register")).json(&body);
        async move {
            let response = request.send().await.unwrap();
            (response.status(), response.json::<Value>().await.unwrap())
        }
    };
    // No bearer token: the provision token is the credential.
    let (status, registered) = post(body(&token)).await;
    assert_eq!(status, StatusCode::CREATED, "{registered}");
    assert!(registered["worker_token"].as_str().unwrap().starts_with("tfw_"), "{registered}");
    assert_eq!(registered["name"], "build-box");
    assert_eq!(registered["accepted"], json!(["add_numbers"]), "only tasks of the same build: {registered}");
    let refused: Vec<(&str, &str)> = registered["refused"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["title"].as_str().unwrap(), r["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert!(refused[0].0 == "sleep_for_seconds" && refused[0].1.contains("differ between"), "{refused:?}");
    assert!(refused[1].0 == "not_here" && refused[1].1.contains("has no task `not_here`"), "{refused:?}");

    let workers = server.get_json("/api/v1/workers").await;
    let listed = workers.as_array().unwrap();
    assert_eq!(listed.len(), 1, "{workers}");
    assert_eq!(listed[0]["worker_id"], registered["worker_id"]);
    assert_eq!((listed[0]["state"].as_str(), listed[0]["host"].as_str()), (Some("active"), Some("build-1")));
    assert_eq!(listed[0]["executors"], json!(["thread", "process"]));
    assert_eq!(listed[0]["queues"], json!(["default"]));
    assert_eq!(listed[0]["tasks"], json!(["add_numbers"]));
    assert_eq!(listed[0]["refused"], registered["refused"], "the list keeps what was refused and why");

    // A worker token opens no user route; no token, no list.
    let worker_token = registered["worker_token"].as_str().unwrap();
    let as_worker = http.get(server.at("/api/v1/workers")).bearer_auth(worker_token).send().await.unwrap();
    assert_eq!(as_worker.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(http.get(server.at("/api/v1/workers")).send().await.unwrap().status(), StatusCode::UNAUTHORIZED);

    // Used, forged, expired: 401 saying what to do; nothing registers.
    let (status, used) = post(body(&token)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(used["error"]["message"].as_str().unwrap().contains("was used already"), "{used}");
    let (status, forged) = post(body("tfp_forged")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(forged["error"]["message"].as_str().unwrap().contains("is not known"), "{forged}");
    let short = provision(&server, &["--name", "brief", "--ttl", "1s"]).unwrap();
    let wait = std::time::Instant::now() + std::time::Duration::from_millis(1_100);
    tokio::time::sleep_until(wait.into()).await;
    let (status, expired) = post(body(&short)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(expired["error"]["message"].as_str().unwrap().contains("has expired"), "{expired}");
    assert_eq!(server.get_json("/api/v1/workers").await.as_array().unwrap().len(), 1);

    // A body that does not fit: the field named.
    let fresh = provision(&server, &["--name", "other"]).unwrap();
    for (change, path, says) in [
        (json!({"protocol_version": 99}), "protocol_version", "speaks protocol version 99"),
        (json!({"executors": ["gpu"]}), "executors[0]", "gpu"),
        (json!({"executors": []}), "executors", "at least one"),
        (json!({"queues": ["no spaces"]}), "queues[0]", "no spaces"),
        (json!({"host": ""}), "host", "1 to 255"),
    ] {
        let mut wrong = body(&fresh);
        wrong.as_object_mut().unwrap().extend(change.as_object().unwrap().clone());
        let (status, error) = post(wrong).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{path}: {error}");
        assert_eq!(error["error"]["details"]["issues"][0]["path"], path, "{error}");
        assert!(error["error"]["message"].as_str().unwrap().contains(says), "{path}: {error}");
    }
    let malformed = http
        .post(server.at("/api/v1/polling/register"))
        .header("content-type", "application/json")
        .body("{\"provision_token\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);
    // The refused bodies used nothing up: the token still registers.
    assert_eq!(post(body(&fresh)).await.0, StatusCode::CREATED);
}

#[test]
fn worker_token_create_says_what_to_fix() {
    let server = Server::start(&[]);
    let (code, stderr) = provision(&server, &["--name", "has space"]).unwrap_err();
    assert_eq!(code, Some(1));
    assert!(stderr.contains("the worker name `has space` is not accepted"), "{stderr}");
    let (code, stderr) = provision(&server, &["--name", "ok", "--ttl", "1w"]).unwrap_err();
    assert_eq!(code, Some(2), "a command-line mistake: {stderr}");
    assert!(stderr.contains("`1w` is not a time to live"), "{stderr}");
}

/// A `worker` process of the app, killed when dropped.
struct Worker {
    child: std::process::Child,
}

impl Worker {
    /// `binary worker --server <server> [--provision-token <token>]` on
    /// `data_dir`.
    fn start(binary: &str, server: &Server, data_dir: &std::path::Path, provision_token: Option<&str>) -> Worker {
        Worker::start_with(binary, server, data_dir, provision_token, std::process::Stdio::inherit(), &[])
    }

    /// [`Worker::start`] with its standard error going to `stderr`.
    fn start_with(
        binary: &str,
        server: &Server,
        data_dir: &std::path::Path,
        provision_token: Option<&str>,
        stderr: std::process::Stdio,
        extra: &[&str],
    ) -> Worker {
        let mut command = Command::new(binary);
        command.stderr(stderr).env("TASKFLOW_DATA_DIR", data_dir);
        command.arg("--data-dir").arg(data_dir).args([
            "worker",
            "--server",
            &server.url,
            "--executors",
            "thread",
            "--grace",
            "1",
        ]);
        if let Some(token) = provision_token {
            command.args(["--provision-token", token]);
        }
        command.args(extra);
        Worker { child: command.spawn().unwrap() }
    }

    fn signal(&self, signal: &str) {
        let sent = Command::new("kill").args([signal, &self.child.id().to_string()]).status().unwrap();
        assert!(sent.success());
    }

    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Waits (at most 30 s) for the process to end by itself.
    fn exit_status(mut self) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(std::time::Instant::now() < deadline, "the worker did not stop");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    fn terminate(&self) {
        self.signal("-TERM");
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A server that leaves every run to remote workers, with short leases so
/// that a dead worker's runs come back soon.
fn polling_server(binary: &str) -> Server {
    polling_server_on(binary, None)
}

/// [`polling_server`] on the PostgreSQL database `database_url`, or SQLite.
fn polling_server_on(binary: &str, database_url: Option<&str>) -> Server {
    let args =
        ["--assignment-mode", "polling", "--lease-seconds", "3", "--heartbeat-seconds", "1", "--rescue-seconds", "1"];
    let env: Vec<(&str, &str)> = database_url.map(|url| ("TASKFLOW_DATABASE_URL", url)).into_iter().collect();
    Server::start_binary(binary, &args, &env)
}

/// A fresh database of `backend` for a server: none for SQLite (the data
/// directory's file), a new PostgreSQL database's URL; `Err` to skip.
async fn database(backend: Backend) -> Result<Option<String>, ()> {
    match backend {
        Backend::Sqlite => Ok(None),
        Backend::Postgres => {
            let Some(admin) = crate::support::backends::postgres_server() else { return Err(()) };
            let url = taskflow::store::PostgresStore::create_test_database(&admin).await.expect("a test database");
            Ok(Some(url))
        }
    }
}

/// The delivery tests' app: `wait_long` is retried twice.
const RELIABILITY_APP: &str = env!("CARGO_BIN_EXE_reliability_app");

/// Polls `GET path` until `done` holds of it (at most 30 s).
async fn eventually(server: &Server, path: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let value = server.get_json(path).await;
        if done(&value) {
            return value;
        }
        assert!(std::time::Instant::now() < deadline, "{what} never came: {value}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

async fn a_remote_worker_executes_the_servers_runs(backend: Backend) {
    let Ok(url) = database(backend).await else { return };
    let server = polling_server_on(APP, url.as_deref());
    let token = provision(&server, &["--name", "box-1"]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let _worker = Worker::start(APP, &server, dir.path(), Some(&token));
    let workers =
        eventually(&server, "/api/v1/workers", "a registration", |w| w.as_array().is_some_and(|w| !w.is_empty())).await;
    let worker_id = workers[0]["worker_id"].as_str().unwrap().to_owned();

    // The worker keeps its identity, for its owner's eyes only.
    let identity = dir.path().join("worker.json");
    let kept: Value = serde_json::from_str(&std::fs::read_to_string(&identity).unwrap()).unwrap();
    assert_eq!(kept["worker_id"], worker_id.as_str());
    assert!(kept["worker_token"].as_str().unwrap().starts_with("tfw_"));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&identity).unwrap().permissions().mode() & 0o777, 0o600);

    // The server executes nothing itself: the worker runs it, and its log
    // and progress come back through the update route.
    let run = server.submit(json!({"task_title": "sleep_for_seconds", "payload": {"seconds": 1}})).await;
    let id = run["task_id"].as_str().unwrap();
    let done = crate::support::server::wait_final(&server.client(), &server, id).await;
    assert_eq!((done["status"].as_str(), done["result"].as_str()), (Some("completed"), Some("great nap!")), "{done}");
    assert_eq!(done["attempts"][0]["worker_id"], worker_id.as_str(), "{done}");
    assert_eq!(done["progress"], json!({"done": 1, "total": 1}), "{done}");
    let logs = eventually(&server, &format!("/api/v1/tasks/{id}/logs"), "the run's log", |l| {
        l["items"].as_array().is_some_and(|items| !items.is_empty())
    })
    .await;
    assert_eq!(logs["items"][0]["message"], "sleeping for 1s", "{logs}");
    let seen = server.get_json("/api/v1/workers").await;
    assert_eq!(seen[0]["state"], "active", "{seen}");
}

async fn a_killed_workers_run_is_rescued_and_its_restart_resumes_as_itself(backend: Backend) {
    let Ok(url) = database(backend).await else { return };
    let server = polling_server_on(RELIABILITY_APP, url.as_deref());
    let token = provision(&server, &["--name", "box-1"]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let worker = Worker::start(RELIABILITY_APP, &server, dir.path(), Some(&token));
    let run = server.submit(json!({"task_title": "wait_long", "payload": {"millis": 3000}})).await;
    let id = run["task_id"].as_str().unwrap().to_owned();
    let running = eventually(&server, &format!("/api/v1/tasks/{id}"), "its start", |r| r["status"] == "running").await;
    let worker_id = running["worker_id"].as_str().unwrap().to_owned();
    worker.kill();

    // Started again on its data directory, without a provision token (the
    // one it had is used up): the same worker, which gets the run again
    // once the dead attempt's lease has ended.
    let _again = Worker::start(RELIABILITY_APP, &server, dir.path(), None);
    let done =
        crate::support::server::wait_final_within(&server.client(), &server, &id, std::time::Duration::from_secs(60))
            .await;
    assert_eq!(done["status"], "completed", "{done}");
    let attempts: Vec<(u64, &str, &str)> = done["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["number"].as_u64().unwrap(), a["outcome"].as_str().unwrap(), a["worker_id"].as_str().unwrap()))
        .collect();
    assert_eq!(attempts, [(1, "failed", worker_id.as_str()), (2, "completed", worker_id.as_str())], "{done}");
    assert_eq!(done["attempts"][0]["error"]["kind"], "lease_expired", "{done}");
    assert_eq!(server.get_json("/api/v1/workers").await.as_array().unwrap().len(), 1, "one worker, registered once");
}

#[tokio::test]
async fn a_push_server_takes_no_workers() {
    let server = Server::start_binary(APP, &["--assignment-mode", "push"], &[]);
    let response =
        reqwest::Client::new().post(server.at("/api/v1/polling/register")).json(&json!({})).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let error: Value = response.json().await.unwrap();
    assert!(error["error"]["message"].as_str().unwrap().contains("--assignment-mode push"), "{error}");
}

/// Registers a worker with a fresh provision token over HTTP; its token.
async fn registered(server: &Server, name: &str) -> String {
    let token = provision(server, &["--name", name]).unwrap();
    let sleep = server.get_json("/api/v1/functions/sleep_for_seconds").await;
    let body = json!({
        "provision_token": token, "protocol_version": 1, "host": name, "version": "1", "executors": ["thread"],
        "tasks": [
            {"title": "sleep_for_seconds", "schema_digest": schema_digest(&sleep["args_schema"])},
            {"title": "not_here", "schema_digest": "0".repeat(64)},
        ],
    });
    let response = reqwest::Client::new().post(server.at("/api/v1/polling/register")).json(&body).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    response.json::<Value>().await.unwrap()["worker_token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn the_polling_routes_take_only_a_workers_own_reports() {
    let server = Server::start_binary(APP, &["--assignment-mode", "polling"], &[]);
    let (a, b) = (registered(&server, "a").await, registered(&server, "b").await);
    let http = reqwest::Client::new();
    let call = |path: &str, token: &str, body: Value| {
        let request = http.post(server.at(path)).bearer_auth(token).json(&body);
        async move {
            let response = request.send().await.unwrap();
            (response.status(), response.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let message = |body: &Value| body["error"]["message"].as_str().unwrap_or_default().to_owned();

    // A user's token is not a worker's.
    let (status, body) = call("/api/v1/polling/claim", &server.token, json!({"limit": 1})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(message(&body).contains("takes a worker's token"), "{body}");
    let (status, body) = call("/api/v1/polling/claim", "tfw_forged", json!({"limit": 1})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, body) = call("/api/v1/polling/claim", &a, json!({"limit": 0})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");

    let run = server.submit(json!({"task_title": "sleep_for_seconds", "payload": {"seconds": 60}})).await;
    let id = run["task_id"].as_str().unwrap();
    let (status, claimed) = call("/api/v1/polling/claim", &a, json!({"limit": 4, "wait_seconds": 5})).await;
    assert_eq!(status, StatusCode::OK, "{claimed}");
    assert_eq!(claimed["runs"].as_array().unwrap().len(), 1, "{claimed}");
    assert_eq!((claimed["runs"][0]["task_id"].as_str(), claimed["runs"][0]["attempt"].as_u64()), (Some(id), Some(1)));
    assert_eq!(server.get_json(&format!("/api/v1/tasks/{id}")).await["status"], "running");

    let report = |attempt: u32| json!({"report": {"task_id": id, "attempt": attempt, "outcome": {"status": "completed", "result": 1}}});
    // Another worker's report, or a superseded attempt's: 409, nothing changes.
    let (status, body) = call("/api/v1/polling/update", &b, report(1)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, body) = call("/api/v1/polling/update", &a, report(2)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let unknown = json!({"report": {"task_id": "01a23248-681d-7062-ac4b-834aa6404cb6", "attempt": 1, "outcome": {"status": "released"}}});
    assert_eq!(call("/api/v1/polling/update", &a, unknown).await.0, StatusCode::NOT_FOUND);
    let bad_id = json!({"renewals": [{"task_id": "nope", "attempt": 1}]});
    let (status, body) = call("/api/v1/polling/update", &a, bad_id).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(message(&body).contains("`nope` is not a run id"), "{body}");
    // Log lines only of runs the worker holds or held.
    let line = |text: &str| json!({"logs": [{"task_id": id, "at_ms": 1, "level": "info", "message": text}]});
    let (status, body) = call("/api/v1/polling/update", &b, line("not mine")).await;
    assert_eq!((status, body["refused_logs"].clone(), body["logs"].clone()), (StatusCode::OK, json!([id]), json!([])));
    // Nothing of a body with a field that does not fit is stored.
    let mixed = json!({
        "logs": [{"task_id": id, "at_ms": 1, "level": "info", "message": "half"}],
        "renewals": [{"task_id": "nope", "attempt": 1}],
    });
    assert_eq!(call("/api/v1/polling/update", &a, mixed).await.0, StatusCode::UNPROCESSABLE_ENTITY);
    let too_long = "x".repeat(2 * 1024 * 1024);
    assert_eq!(call("/api/v1/polling/update", &a, line(&too_long)).await.0, StatusCode::PAYLOAD_TOO_LARGE);
    let malformed = http
        .post(server.at("/api/v1/polling/update"))
        .bearer_auth(&a)
        .header("content-type", "application/json")
        .body("{\"renewals\": [")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);
    assert_eq!(server.get_json(&format!("/api/v1/tasks/{id}")).await["status"], "running", "nothing changed");

    // The holder's renewal, line and report are taken.
    let renewal = json!({"renewals": [{"task_id": id, "attempt": 1, "progress": {"done": 2, "total": 5}}]});
    let (status, body) = call("/api/v1/polling/update", &a, renewal.clone()).await;
    assert_eq!((status, body["lost"].clone()), (StatusCode::OK, json!([])), "{body}");
    let (status, body) = call("/api/v1/polling/update", &a, line("mine")).await;
    assert_eq!((status, body["logs"][0]["message"].as_str()), (StatusCode::OK, Some("mine")), "{body}");
    let logs = server.get_json(&format!("/api/v1/tasks/{id}/logs")).await;
    let messages: Vec<&str> =
        logs["items"].as_array().unwrap().iter().map(|l| l["message"].as_str().unwrap()).collect();
    assert_eq!(messages, ["mine"], "neither another worker's line nor a refused body's");
    let (status, body) = call("/api/v1/polling/update", &a, report(1)).await;
    assert_eq!((status, body["run"]["status"].as_str()), (StatusCode::OK, Some("completed")), "{body}");
    assert_eq!(body["run"]["progress"], json!({"done": 2, "total": 5}), "{body}");
    // Its lease is gone with the run's end.
    let (_, body) = call("/api/v1/polling/update", &a, renewal).await;
    assert_eq!(body["lost"], json!([id]), "{body}");
}

/// A worker on `dir` that holds a minute-long `wait_long` run: the worker,
/// the run's id, and the run as it started.
async fn holding_a_long_run(server: &Server, dir: &std::path::Path) -> (Worker, String, Value) {
    let token = provision(server, &["--name", "box-1"]).unwrap();
    let worker = Worker::start(RELIABILITY_APP, server, dir, Some(&token));
    let run = server.submit(json!({"task_title": "wait_long", "payload": {"millis": 60000}})).await;
    let id = run["task_id"].as_str().unwrap().to_owned();
    let running = eventually(server, &format!("/api/v1/tasks/{id}"), "its start", |r| r["status"] == "running").await;
    (worker, id, running)
}

#[tokio::test]
async fn a_revoked_worker_stops_and_its_run_goes_back() {
    let server = polling_server(RELIABILITY_APP);
    let dir = tempfile::tempdir().unwrap();
    let (worker, id, running) = holding_a_long_run(&server, dir.path()).await;
    let worker_id = running["worker_id"].as_str().unwrap().to_owned();
    let kept: Value = serde_json::from_str(&std::fs::read_to_string(dir.path().join("worker.json")).unwrap()).unwrap();

    let response = server
        .client()
        .post(server.at("/api/v1/polling/revoke"))
        .json(&json!({"worker_id": worker_id}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let revoked: Value = response.json().await.unwrap();
    assert_eq!(revoked["taken_back"], json!([id]), "{revoked}");
    let back = server.get_json(&format!("/api/v1/tasks/{id}")).await;
    assert_eq!((back["status"].as_str(), back["attempt"].as_u64()), (Some("pending"), Some(2)), "{back}");
    assert_eq!(back["attempts"][0]["error"]["kind"], "worker_revoked", "{back}");

    // Its next call is refused, and it stops by itself.
    assert!(worker.exit_status().success());
    let claim = reqwest::Client::new()
        .post(server.at("/api/v1/polling/claim"))
        .bearer_auth(kept["worker_token"].as_str().unwrap())
        .json(&json!({"limit": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(claim.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(server.get_json("/api/v1/workers").await[0]["state"], "revoked");
    let unknown = server.client().post(server.at("/api/v1/polling/revoke")).json(&json!({"worker_id": "nobody"}));
    assert_eq!(unknown.send().await.unwrap().status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_stopped_worker_hands_its_run_back() {
    let server = polling_server(RELIABILITY_APP);
    let dir = tempfile::tempdir().unwrap();
    let (worker, id, _) = holding_a_long_run(&server, dir.path()).await;
    // SIGTERM with a 1 s grace: the run is handed back, not counted.
    worker.terminate();
    assert!(worker.exit_status().success());
    let back = server.get_json(&format!("/api/v1/tasks/{id}")).await;
    assert_eq!((back["status"].as_str(), back["attempt"].as_u64()), (Some("pending"), Some(1)), "{back}");
    assert_eq!(back["attempts"], json!([]), "a hand-back is not an attempt: {back}");
}

#[tokio::test]
async fn a_paused_workers_late_report_is_refused_and_the_run_ends_once() {
    let server = polling_server(RELIABILITY_APP);
    let (paused_dir, other_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let stderr = paused_dir.path().join("stderr.log");
    let token = provision(&server, &["--name", "paused"]).unwrap();
    let paused = Worker::start_with(
        RELIABILITY_APP,
        &server,
        paused_dir.path(),
        Some(&token),
        std::fs::File::create(&stderr).unwrap().into(),
        &[],
    );
    let run = server.submit(json!({"task_title": "effect", "payload": {"n": 7, "millis": 2000}})).await;
    let id = run["task_id"].as_str().unwrap().to_owned();
    let running = eventually(&server, &format!("/api/v1/tasks/{id}"), "its start", |r| r["status"] == "running").await;
    let paused_id = running["worker_id"].as_str().unwrap().to_owned();
    let effects = |dir: &std::path::Path| std::fs::read_to_string(dir.join("effects.log")).unwrap_or_default();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !effects(paused_dir.path()).contains(&format!("start {id} 1")) {
        assert!(std::time::Instant::now() < deadline, "the attempt never started");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // Paused mid-attempt, past its 3 s lease: the run goes to another worker.
    paused.signal("-STOP");
    let other = Worker::start(
        RELIABILITY_APP,
        &server,
        other_dir.path(),
        Some(&provision(&server, &["--name", "other"]).unwrap()),
    );
    let done =
        crate::support::server::wait_final_within(&server.client(), &server, &id, std::time::Duration::from_secs(60))
            .await;
    assert_eq!((done["status"].as_str(), done["result"].as_u64()), (Some("completed"), Some(7)), "{done}");
    let other_id = done["attempts"][1]["worker_id"].as_str().unwrap().to_owned();
    assert_ne!(other_id, paused_id, "{done}");

    // Resumed, the paused worker finishes its attempt and reports it: refused.
    paused.signal("-CONT");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !std::fs::read_to_string(&stderr).unwrap_or_default().contains("refused a stale outcome") {
        assert!(std::time::Instant::now() < deadline, "no late report: {}", std::fs::read_to_string(&stderr).unwrap());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let after = server.get_json(&format!("/api/v1/tasks/{id}")).await;
    assert_eq!(after["status"], "completed");
    let attempts: Vec<(&str, &str)> = after["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["outcome"].as_str().unwrap(), a["worker_id"].as_str().unwrap()))
        .collect();
    assert_eq!(attempts, [("failed", paused_id.as_str()), ("completed", other_id.as_str())], "one end: {after}");
    // Both executed it (at least once), each its own attempt.
    assert!(effects(paused_dir.path()).contains(&format!("done {id} 1")), "{}", effects(paused_dir.path()));
    assert!(effects(other_dir.path()).contains(&format!("done {id} 2")), "{}", effects(other_dir.path()));
    drop(other);
}

#[tokio::test]
async fn the_workers_page_lists_them_and_revokes_one() {
    use crate::web::pages::{csrf, page, post_form, session_cookie};
    let server = Server::start_binary(APP, &["--assignment-mode", "polling"], &[]);
    let cookie = session_cookie(&server).await;
    let (status, empty) = page(&server, &cookie, "/workers").await;
    assert_eq!(status, StatusCode::OK);
    assert!(empty.contains("0 workers") && empty.contains("worker-token create --name build-box"), "{empty}");

    let token = registered(&server, "box-a").await;
    let run = server.submit(json!({"task_title": "sleep_for_seconds", "payload": {"seconds": 60}})).await;
    let claim = reqwest::Client::new()
        .post(server.at("/api/v1/polling/claim"))
        .bearer_auth(&token)
        .json(&json!({"limit": 1, "wait_seconds": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(claim.status(), StatusCode::OK);
    let (_, listed) = page(&server, &cookie, "/workers").await;
    assert!(listed.contains("1 worker<") && listed.contains(">box-a<"), "{listed}");
    assert!(listed.contains(r#"<span class="badge active">active</span>"#), "{listed}");
    assert!(listed.contains(r#"<td data-role="running">1</td>"#), "{listed}");
    assert!(listed.contains("1 refused") && listed.contains("has no task `not_here`"), "{listed}");
    let worker_id = server.get_json("/api/v1/workers").await[0]["worker_id"].as_str().unwrap().to_owned();

    let response =
        post_form(&server, &cookie, &format!("/workers/{worker_id}/revoke"), &[("tf:csrf", &csrf(&listed))], None)
            .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let (_, after) = page(&server, &cookie, "/workers").await;
    assert!(after.contains(r#"<span class="badge revoked">revoked</span>"#), "{after}");
    assert!(!after.contains(">Revoke</button>"), "no button for a revoked worker: {after}");
    let back = server.get_json(&format!("/api/v1/tasks/{}", run["task_id"].as_str().unwrap())).await;
    // Its run is taken back: with no attempt left (`sleep_for_seconds` has no retries), failed.
    assert_eq!((back["status"].as_str(), back["error"]["kind"].as_str()), (Some("failed"), Some("worker_revoked")));
    // Without the form's token, nothing is revoked.
    let forged = post_form(&server, &cookie, "/workers/nobody/revoke", &[], None).await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
}

on_every_backend!(
    a_remote_worker_executes_the_servers_runs,
    a_killed_workers_run_is_rescued_and_its_restart_resumes_as_itself
);

#[tokio::test]
async fn registrations_are_rate_limited_per_address() {
    let server = Server::start(&[]);
    let forged = json!({
        "provision_token": "tfp_forged", "protocol_version": 1, "host": "h", "version": "1",
        "executors": ["thread"], "tasks": [],
    });
    let from =
        |ip: &str| reqwest::Client::builder().local_address(ip.parse::<std::net::IpAddr>().unwrap()).build().unwrap();
    let (one, other) = (from("127.0.0.2"), from("127.0.0.3"));
    for _ in 0..10 {
        let response = one.post(server.at("/api/v1/polling/register")).json(&forged).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    let limited = one.post(server.at("/api/v1/polling/register")).json(&forged).send().await.unwrap();
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = limited.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    let error: Value = limited.json().await.unwrap();
    assert!(error["error"]["message"].as_str().unwrap().contains("registrations a minute"), "{error}");
    // Another address has its own share.
    let response = other.post(server.at("/api/v1/polling/register")).json(&forged).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn runs_go_only_to_workers_that_take_their_queue() {
    let server = polling_server(RELIABILITY_APP);
    let (plain_dir, gpu_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let plain_token = provision(&server, &["--name", "plain"]).unwrap();
    let _plain = Worker::start(RELIABILITY_APP, &server, plain_dir.path(), Some(&plain_token));
    let gpu_token = provision(&server, &["--name", "gpu"]).unwrap();
    let inherit = std::process::Stdio::inherit();
    let _gpu =
        Worker::start_with(RELIABILITY_APP, &server, gpu_dir.path(), Some(&gpu_token), inherit, &["--queues", "gpu"]);
    let workers =
        eventually(&server, "/api/v1/workers", "two registrations", |w| w.as_array().is_some_and(|w| w.len() == 2))
            .await;
    let id_of = |name: &str| {
        workers.as_array().unwrap().iter().find(|w| w["name"] == name).unwrap()["worker_id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (plain, gpu) = (id_of("plain"), id_of("gpu"));
    assert_eq!(workers.as_array().unwrap().iter().find(|w| w["name"] == "gpu").unwrap()["queues"], json!(["gpu"]));
    let function = server.get_json("/api/v1/functions/on_gpu").await;
    assert_eq!(function["options"]["queue"], "gpu", "{function}");

    for _ in 0..3 {
        let on_gpu = server.submit(json!({"task_title": "on_gpu", "payload": {"n": 5}})).await;
        let elsewhere = server.submit(json!({"task_title": "wait_long", "payload": {"millis": 10}})).await;
        for (run, expected) in [(on_gpu, &gpu), (elsewhere, &plain)] {
            let done =
                crate::support::server::wait_final(&server.client(), &server, run["task_id"].as_str().unwrap()).await;
            assert_eq!(done["status"], "completed", "{done}");
            assert_eq!(done["attempts"][0]["worker_id"], expected.as_str(), "{done}");
        }
    }
}

#[tokio::test]
async fn a_hybrid_servers_own_worker_keeps_to_its_queues() {
    let server = Server::start_binary(RELIABILITY_APP, &["--assignment-mode", "hybrid", "--queues", "default"], &[]);
    let dir = tempfile::tempdir().unwrap();
    let token = provision(&server, &["--name", "gpu"]).unwrap();
    let inherit = std::process::Stdio::inherit();
    let _gpu = Worker::start_with(RELIABILITY_APP, &server, dir.path(), Some(&token), inherit, &["--queues", "gpu"]);
    let workers =
        eventually(&server, "/api/v1/workers", "a registration", |w| w.as_array().is_some_and(|w| !w.is_empty())).await;
    let gpu = workers[0]["worker_id"].as_str().unwrap().to_owned();
    for _ in 0..3 {
        let on_gpu = server.submit(json!({"task_title": "on_gpu", "payload": {"n": 5}})).await;
        let plain = server.submit(json!({"task_title": "wait_long", "payload": {"millis": 10}})).await;
        let client = server.client();
        let on_gpu = crate::support::server::wait_final(&client, &server, on_gpu["task_id"].as_str().unwrap()).await;
        assert_eq!(on_gpu["attempts"][0]["worker_id"], gpu.as_str(), "only the gpu worker: {on_gpu}");
        let plain = crate::support::server::wait_final(&client, &server, plain["task_id"].as_str().unwrap()).await;
        let by = plain["attempts"][0]["worker_id"].as_str().unwrap();
        assert!(plain["status"] == "completed" && by != gpu, "the server's own worker: {plain}");
    }
}

#[tokio::test]
async fn a_claim_waiting_when_its_worker_is_revoked_takes_nothing() {
    let server = Server::start_binary(APP, &["--assignment-mode", "polling"], &[]);
    let token = registered(&server, "waiting").await;
    let worker_id = server.get_json("/api/v1/workers").await[0]["worker_id"].as_str().unwrap().to_owned();
    let claim = {
        let request = reqwest::Client::new()
            .post(server.at("/api/v1/polling/claim"))
            .bearer_auth(&token)
            .json(&json!({"limit": 1, "wait_seconds": 25}));
        tokio::spawn(async move { request.send().await.unwrap() })
    };
    // Let the claim reach the server and wait (were it late, the gate
    // refuses it the same way).
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let revoke = server.client().post(server.at("/api/v1/polling/revoke")).json(&json!({"worker_id": worker_id}));
    assert_eq!(revoke.send().await.unwrap().status(), StatusCode::OK);
    let run = server.submit(json!({"task_title": "sleep_for_seconds", "payload": {"seconds": 1}})).await;
    let answered = claim.await.unwrap();
    assert_eq!(answered.status(), StatusCode::UNAUTHORIZED, "a revoked worker gets no run");
    let after = server.get_json(&format!("/api/v1/tasks/{}", run["task_id"].as_str().unwrap())).await;
    assert_eq!((after["status"].as_str(), after["attempt"].as_u64()), (Some("pending"), Some(1)), "{after}");
}

#[tokio::test]
async fn a_remote_workers_reports_fit_the_servers_body_limit() {
    let args = ["--assignment-mode", "polling", "--max-body-bytes", "65536"];
    let server = Server::start_binary(RELIABILITY_APP, &args, &[]);
    let dir = tempfile::tempdir().unwrap();
    let token = provision(&server, &["--name", "box-1"]).unwrap();
    let _worker = Worker::start(RELIABILITY_APP, &server, dir.path(), Some(&token));
    let client = server.client();

    // 2,000 lines of 100 bytes, about 200 KB: sent in batches that fit.
    let run = server.submit(json!({"task_title": "bulky", "payload": {"bytes": 10, "lines": 2000}})).await;
    let id = run["task_id"].as_str().unwrap().to_owned();
    let done = crate::support::server::wait_final(&client, &server, &id).await;
    assert_eq!(done["status"], "completed", "{done}");
    let tail = eventually(&server, &format!("/api/v1/tasks/{id}/logs?after=1999"), "every line", |l| {
        l["items"].as_array().is_some_and(|items| !items.is_empty())
    })
    .await;
    assert_eq!(tail["items"][0]["seq"], 2000, "{tail}");
    assert!(tail["items"][0]["message"].as_str().unwrap().starts_with("01999 "), "{tail}");

    // A result larger than the limit: the attempt fails saying so, at once,
    // rather than being refused and lost.
    let run = server.submit(json!({"task_title": "bulky", "payload": {"bytes": 200000, "lines": 0}})).await;
    let done = crate::support::server::wait_final(&client, &server, run["task_id"].as_str().unwrap()).await;
    assert_eq!((done["status"].as_str(), done["error"]["kind"].as_str()), (Some("failed"), Some("result_too_large")));
    assert!(done["error"]["message"].as_str().unwrap().contains("65536 bytes"), "{done}");
    assert_eq!(done["attempt"], 1, "not retried: it would not fit the next time either");
}

#[tokio::test]
async fn a_worker_registering_anew_keeps_its_identity_private() {
    use std::os::unix::fs::PermissionsExt;
    let server = polling_server(APP);
    let dir = tempfile::tempdir().unwrap();
    // The identity of another server's worker, readable by all.
    let identity = dir.path().join("worker.json");
    let other = json!({"server": "http://127.0.0.1:9", "worker_id": "w", "name": "w", "worker_token": "tfw_old"});
    std::fs::write(&identity, other.to_string()).unwrap();
    std::fs::set_permissions(&identity, std::fs::Permissions::from_mode(0o644)).unwrap();
    let token = provision(&server, &["--name", "box-1"]).unwrap();
    let _worker = Worker::start(APP, &server, dir.path(), Some(&token));
    eventually(&server, "/api/v1/workers", "a registration", |w| w.as_array().is_some_and(|w| !w.is_empty())).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let kept = loop {
        let kept: Value =
            serde_json::from_str(&std::fs::read_to_string(&identity).unwrap_or_default()).unwrap_or_default();
        if kept["server"] == server.url.as_str() {
            break kept;
        }
        assert!(std::time::Instant::now() < deadline, "the identity was not rewritten: {kept}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert!(kept["worker_token"].as_str().unwrap().starts_with("tfw_") && kept["worker_token"] != "tfw_old");
    assert_eq!(std::fs::metadata(&identity).unwrap().permissions().mode() & 0o777, 0o600);
}
