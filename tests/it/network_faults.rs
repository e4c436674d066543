//! The network to PostgreSQL fails under a running server (through a
//! loopback proxy, `proxy.rs`): cut for five seconds while runs flow, the
//! API answers 503 at once during the cut, takes submits again soon after,
//! and every acknowledged run completes exactly once; slowed by 300 ms a
//! chunk for 30 s, no live lease expires.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use taskflow::store::PostgresStore;

use crate::proxy::Proxy;
use crate::server::Server;

const APP: &str = env!("CARGO_BIN_EXE_reliability_app");

async fn submit(client: &reqwest::Client, server: &Server, n: u32) -> reqwest::Result<reqwest::Response> {
    client
        .post(server.at("/api/v1/tasks"))
        .timeout(Duration::from_secs(30))
        .json(&json!({"task_title": "effect", "payload": {"n": n, "millis": 200}, "unique": false}))
        .send()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_cut_for_five_seconds_answers_503_then_loses_nothing() {
    let Some(admin) = crate::backends::postgres_server() else { return };
    let url = PostgresStore::create_test_database(&admin).await.expect("a fresh test database");
    let host = url.split('@').nth(1).unwrap().split('/').next().unwrap();
    let target: SocketAddr = host.parse().unwrap();
    let proxy = Proxy::start(target).await;
    let proxied = url.replacen(&format!("@{host}/"), &format!("@{}/", proxy.addr), 1);
    let server = Server::start_binary(APP, &[], &[("TASKFLOW_DATABASE_URL", &proxied)]);
    let client = server.client();

    let mut acked: Vec<String> = Vec::new();
    let mut n = 0;
    let mut take = |response: Value| acked.push(response["task_id"].as_str().unwrap().to_owned());
    for _ in 0..30 {
        let response = submit(&client, &server, n).await.unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        take(response.json().await.unwrap());
        n += 1;
    }

    proxy.cut(true);
    let cut_at = Instant::now();
    let response = submit(&client, &server, n).await.expect("an answer, not a hang");
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "unavailable");
    assert!(!body["error"]["message"].as_str().unwrap().contains("sqlx"), "no database internals: {body}");
    let health = client.get(server.at("/health")).timeout(Duration::from_secs(30)).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::SERVICE_UNAVAILABLE, "/health tells the store is down");
    tokio::time::sleep(Duration::from_secs(5).saturating_sub(cut_at.elapsed())).await;
    proxy.cut(false);

    // Submits are taken again soon after.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let response = submit(&client, &server, n).await.unwrap();
        if response.status() == StatusCode::ACCEPTED {
            take(response.json().await.unwrap());
            n += 1;
            break;
        }
        assert!(Instant::now() < deadline, "the API did not recover within 10 s: {}", response.status());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for _ in 0..20 {
        let response = submit(&client, &server, n).await.unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        take(response.json().await.unwrap());
        n += 1;
    }

    // Every acknowledged run completes, each executed to its end once.
    let deadline = Instant::now() + Duration::from_secs(120);
    for id in &acked {
        loop {
            let run = server.get_json(&format!("/api/v1/tasks/{id}")).await;
            if run["status"] == "completed" {
                break;
            }
            assert!(run["status"] == "pending" || run["status"] == "running", "{run}");
            assert!(Instant::now() < deadline, "run {id} never completed: {run}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let log = std::fs::read_to_string(server.data_dir.join("effects.log")).unwrap();
    let mut done: HashMap<&str, usize> = HashMap::new();
    for line in log.lines().filter(|l| l.starts_with("done ")) {
        *done.entry(line.split(' ').nth(1).unwrap()).or_default() += 1;
    }
    for id in &acked {
        assert_eq!(done.get(id.as_str()), Some(&1), "run {id} completed exactly once");
    }
    drop(server);
    let _ = PostgresStore::drop_test_database(&admin, &url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_slowed_by_300_ms_expires_no_live_lease() {
    let Some(admin) = crate::backends::postgres_server() else { return };
    let url = PostgresStore::create_test_database(&admin).await.expect("a fresh test database");
    let host = url.split('@').nth(1).unwrap().split('/').next().unwrap();
    let proxy = Proxy::start(host.parse().unwrap()).await;
    let proxied = url.replacen(&format!("@{host}/"), &format!("@{}/", proxy.addr), 1);
    // The test timings: leases of 5 s renewed every second.
    let timings = ["--lease-seconds", "5", "--heartbeat-seconds", "1", "--rescue-seconds", "1"];
    let server = Server::start_binary(APP, &timings, &[("TASKFLOW_DATABASE_URL", &proxied)]);
    let client = server.client();
    let mut ids = Vec::new();
    for n in 0..8 {
        let body = json!({"task_title": "effect", "payload": {"n": n, "millis": 8_000}, "unique": false});
        let run: Value =
            client.post(server.at("/api/v1/tasks")).json(&body).send().await.unwrap().json().await.unwrap();
        ids.push(run["task_id"].as_str().unwrap().to_owned());
    }
    proxy.set_latency(Duration::from_millis(300));
    tokio::time::sleep(Duration::from_secs(30)).await;
    proxy.set_latency(Duration::ZERO);
    let deadline = Instant::now() + Duration::from_secs(120);
    for id in &ids {
        loop {
            let run = server.get_json(&format!("/api/v1/tasks/{id}")).await;
            if run["status"] == "completed" {
                assert_eq!(run["attempt"], 1, "no lease expired, so no second attempt: {run}");
                break;
            }
            assert!(Instant::now() < deadline, "run {id} never completed: {run}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let log = std::fs::read_to_string(server.data_dir.join("effects.log")).unwrap();
    assert_eq!(log.lines().filter(|l| l.starts_with("start ")).count(), ids.len(), "each run started once: {log}");
    drop(server);
    let _ = PostgresStore::drop_test_database(&admin, &url).await;
}
