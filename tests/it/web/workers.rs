//! Remote workers' registration, end to end: `worker-token create` on the
//! server's data directory, `POST /api/v1/polling/register` with the
//! provision token it printed, `GET /api/v1/workers`.

use std::process::Command;

use reqwest::StatusCode;
use serde_json::{Value, json};
use taskflow::web::polling::tokens::schema_digest;

use crate::support::server::Server;

const APP: &str = env!("CARGO_BIN_EXE_simple_tasks");

/// `worker-token create` on the server's data directory: the token, or
/// the command's exit code and standard error.
fn provision(server: &Server, args: &[&str]) -> Result<String, (Option<i32>, String)> {
    let output = Command::new(APP)
        .arg("--data-dir")
        .arg(&server.data_dir)
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
