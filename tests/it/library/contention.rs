//! One SQLite file shared by several processes: eight servers on one data
//! directory (eight claimers, each process with its own writer), a thousand
//! HTTP submits spread over them while another process holds the database's
//! write lock for two seconds. Every submit is acknowledged — a locked
//! database makes a write wait (SQLite's busy timeout), never answers a
//! client with a 5xx — and every run is claimed and executed exactly once.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::server::Server;

const APP: &str = env!("CARGO_BIN_EXE_reliability_app");
const SERVERS: usize = 8;
const RUNS: usize = 1_000;
const CLIENTS: usize = 16;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_servers_on_one_sqlite_file_claim_each_run_once_and_never_answer_busy() {
    let dir = tempfile::tempdir().unwrap();
    let servers: Arc<Vec<Server>> =
        Arc::new((0..SERVERS).map(|_| Server::start_in(APP, dir.path(), &["--max-concurrency", "8"], &[])).collect());

    // The submitters, each sending its share to the servers in turn.
    let acknowledged = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut clients = tokio::task::JoinSet::new();
    for c in 0..CLIENTS {
        let (servers, acknowledged) = (Arc::clone(&servers), Arc::clone(&acknowledged));
        clients.spawn(async move {
            let mut answers = Vec::new();
            for n in (c..RUNS).step_by(CLIENTS) {
                let server = &servers[n % SERVERS];
                let body = json!({"task_title": "effect", "payload": {"n": n, "millis": 0}, "unique": false});
                let response = server
                    .client()
                    .post(server.at("/api/v1/tasks"))
                    .timeout(Duration::from_secs(60))
                    .json(&body)
                    .send()
                    .await
                    .expect("an answer");
                let status = response.status();
                let text = response.text().await.unwrap();
                acknowledged.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                answers.push((status, text));
            }
            answers
        });
    }

    // Another process's connection takes the write lock for 2 s midway.
    while acknowledged.load(std::sync::atomic::Ordering::SeqCst) < RUNS / 5 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let database = dir.path().join("taskflow.db");
    tokio::task::spawn_blocking(move || {
        let conn = rusqlite::Connection::open(&database).unwrap();
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        std::thread::sleep(Duration::from_secs(2));
        conn.execute_batch("COMMIT").unwrap();
    })
    .await
    .unwrap();

    let mut ids = Vec::new();
    for (status, text) in clients.join_all().await.into_iter().flatten() {
        assert_eq!(status, reqwest::StatusCode::ACCEPTED, "every submit is acknowledged: {text}");
        let run: serde_json::Value = serde_json::from_str(&text).unwrap();
        ids.push(run["task_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), RUNS);

    // Every run completes, each claimed by one server once.
    let deadline = Instant::now() + Duration::from_secs(120);
    for (i, id) in ids.iter().enumerate() {
        let server = &servers[i % SERVERS];
        loop {
            let response = server.client().get(server.at(&format!("/api/v1/tasks/{id}"))).send().await.unwrap();
            assert!(!response.status().is_server_error(), "reading run {id}: {}", response.status());
            let run: serde_json::Value = response.json().await.unwrap();
            if run["status"] == "completed" {
                assert_eq!(run["attempt"], 1, "{run}");
                break;
            }
            assert!(Instant::now() < deadline, "run {id} never completed: {run}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // `start <run> <attempt> <pid>` lines.
    let log = std::fs::read_to_string(dir.path().join("effects.log")).unwrap();
    let mut starts: HashMap<&str, usize> = HashMap::new();
    let mut pids = HashSet::new();
    for line in log.lines().filter(|l| l.starts_with("start ")) {
        let fields: Vec<&str> = line.split(' ').collect();
        *starts.entry(fields[1]).or_default() += 1;
        pids.insert(fields[3]);
    }
    assert!(pids.len() > 1, "the servers shared the work: {pids:?}");
    for id in &ids {
        assert_eq!(starts.get(id.as_str()), Some(&1), "run {id} was claimed and started exactly once");
    }
}
