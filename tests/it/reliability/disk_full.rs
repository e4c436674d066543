//! The SQLite store's disk fills up under a running server (its size capped
//! with `max_page_count` until writes fail, then raised): submits get a
//! clear 507, nothing acknowledged is lost, the file stays intact, and work
//! resumes once there is room.

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use taskflow::client::Client;
use taskflow::control_plane::Plane;
use taskflow::engine::{Engine, EngineConfig};
use taskflow::store::SqliteStore;
use taskflow::task;
use taskflow::web::{Auth, AuthConfig, WebConfig};

/// Keep a text (the runs' payloads fill the disk)
#[task(title = "disk.keep")]
fn keep(text: String) -> usize {
    text.len()
}

/// An engine on SQLite in `dir` and the control plane over it, on an
/// ephemeral loopback port.
struct Served {
    store: SqliteStore,
    engine: Engine,
    url: String,
    token: String,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn serve(dir: &tempfile::TempDir) -> Served {
    let store = SqliteStore::open_in(dir.path()).unwrap();
    let engine = Engine::start(Arc::new(store.clone()), EngineConfig::default()).unwrap();
    let auth = Auth::new(AuthConfig::with_secret(vec![9; 32]).unwrap()).unwrap();
    let token = auth.access_token("test", Duration::from_secs(600));
    let config = WebConfig::default();
    let router = taskflow::web::router(Plane::new(Client::new(engine.clone())), Arc::new(auth), &config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server =
        tokio::spawn(async move { taskflow::web::serve(listener, router, &config, std::future::pending()).await });
    Served { store, engine, url, token, server }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_submits_clearly_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let Served { store, engine, url, token, server } = serve(&dir).await;
    let client = reqwest::Client::new();
    let submit = |n: usize| {
        client
            .post(format!("{url}/api/v1/tasks"))
            .bearer_auth(&token)
            .json(&json!({"task_title": "disk.keep", "payload": {"text": format!("{n}:{}", "x".repeat(20_000))}, "unique": false}))
            .send()
    };

    let pages = store.page_count().await.unwrap();
    assert!(store.set_max_page_count(pages + 40).await.unwrap() >= pages);
    let mut acked = Vec::new();
    let refusal = loop {
        let response = submit(acked.len()).await.unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        if status != StatusCode::ACCEPTED {
            break (status, body);
        }
        acked.push(body["task_id"].as_str().unwrap().to_owned());
        assert!(acked.len() < 10_000, "the disk never filled");
    };
    assert_eq!(refusal.0, StatusCode::INSUFFICIENT_STORAGE, "{}", refusal.1);
    assert_eq!(refusal.1["error"]["code"], "store_full");
    assert!(refusal.1["error"]["message"].as_str().unwrap().contains("free space"), "{}", refusal.1);
    let health = client.get(format!("{url}/health")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK, "the store still answers reads");
    assert_eq!(store.integrity_check().await.unwrap(), "ok");

    // Room again: the queue drains and new submits are taken.
    store.set_max_page_count(1 << 30).await.unwrap();
    let response = submit(usize::MAX).await.unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let client_api = Client::new(engine.clone());
    for id in &acked {
        let run = client_api.wait(id.parse().unwrap(), Duration::from_secs(60)).await.unwrap();
        assert_eq!(run.status.as_str(), "completed", "acknowledged run {id} ran: {run:?}");
    }
    assert_eq!(store.integrity_check().await.unwrap(), "ok");
    server.abort();
    engine.shutdown(Duration::from_secs(1)).await;
}

/// A run whose stored record is damaged (a payload that is not JSON,
/// written behind the store's back): reading it is a 500 that names the
/// run and says retrying will not help, not a 503 inviting a retry loop;
/// the other runs read as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_run_is_a_500_naming_it_not_a_retry() {
    let dir = tempfile::tempdir().unwrap();
    let Served { store, engine, url, token, server } = serve(&dir).await;
    let client = reqwest::Client::new();
    let mut ids = Vec::new();
    for text in ["damaged", "intact"] {
        let body = json!({"task_title": "disk.keep", "payload": {"text": text}, "unique": false});
        let response = client.post(format!("{url}/api/v1/tasks")).bearer_auth(&token).json(&body).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        let id: String = response.json::<Value>().await.unwrap()["task_id"].as_str().unwrap().to_owned();
        Client::new(engine.clone()).wait(id.parse().unwrap(), Duration::from_secs(60)).await.unwrap();
        ids.push(id);
    }
    let raw = rusqlite::Connection::open(store.path()).unwrap();
    raw.execute("UPDATE runs SET payload = '{not json' WHERE id = ?1", [&ids[0]]).unwrap();
    drop(raw);

    let response = client.get(format!("{url}/api/v1/tasks/{}", ids[0])).bearer_auth(&token).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(response.headers().get("retry-after").is_none(), "no invitation to retry");
    let body: Value = response.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains(&ids[0]) && message.contains("will not help"), "{body}");
    let intact = client.get(format!("{url}/api/v1/tasks/{}", ids[1])).bearer_auth(&token).send().await.unwrap();
    assert_eq!(intact.status(), StatusCode::OK, "the other run reads as before");
    server.abort();
    engine.shutdown(Duration::from_secs(1)).await;
}
