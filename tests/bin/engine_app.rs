//! An app embedding the engine, for the kill-and-restart test. It works on
//! the PostgreSQL database at `$TASKFLOW_DATABASE_URL` when that is set,
//! else on the SQLite store in `$TASKFLOW_DATA_DIR`:
//!
//! - `engine_app submit N`: submits N runs of `crash.slow_effect`, prints
//!   `submitted`, and works on them until killed;
//! - `engine_app drain`: works until every run is final, then prints one JSON
//!   line per run (`{"id", "status", "attempt"}`) and exits.
//!
//! Each attempt appends `start <id> <attempt>` and `done <id> <attempt>` to
//! `effects.log` in `$TASKFLOW_DATA_DIR` (on either backend), so the test can
//! count executions.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use taskflow::client::{Client, SubmitOptions};
use taskflow::engine::{Engine, EngineConfig};
use taskflow::run::RunStatus;
use taskflow::store::{PostgresStore, RunFilter, SqliteStore, Store};
use taskflow::{TaskContext, task};

fn data_dir() -> PathBuf {
    PathBuf::from(std::env::var("TASKFLOW_DATA_DIR").expect("TASKFLOW_DATA_DIR is set"))
}

fn effect(line: &str) {
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(data_dir().join("effects.log")).unwrap();
    // One write per line, so concurrent runs never interleave half lines.
    file.write_all(format!("{line}\n").as_bytes()).unwrap();
    file.sync_all().unwrap();
}

/// Works for a while, recording its start and end.
#[task(title = "crash.slow_effect")]
fn slow_effect(ctx: &TaskContext, n: u32, millis: u64) -> u32 {
    effect(&format!("start {} {}", ctx.run_id(), ctx.attempt()));
    std::thread::sleep(Duration::from_millis(millis));
    effect(&format!("done {} {}", ctx.run_id(), ctx.attempt()));
    n
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let store: Arc<dyn Store> = match std::env::var("TASKFLOW_DATABASE_URL") {
        Ok(url) => Arc::new(PostgresStore::connect(&url).await.expect("the PostgreSQL store opens")),
        Err(_) => Arc::new(SqliteStore::open_in(data_dir()).expect("the SQLite store opens")),
    };
    let mut config = EngineConfig::default();
    config.max_concurrency = 4;
    config.poll_interval = Duration::from_millis(50);
    config.lease = Duration::from_secs(2);
    config.heartbeat_interval = Duration::from_millis(500);
    config.rescue_interval = Duration::from_millis(200);
    let engine = Engine::start(store, config).expect("the tasks are consistent");
    let client = Client::new(engine);
    match args.get(1).map(String::as_str) {
        Some("submit") => {
            let count: u32 = args[2].parse().unwrap();
            for n in 0..count {
                let mut options = SubmitOptions::default();
                options.retries = Some(3);
                client.submit_with("crash.slow_effect", json!({"n": n, "millis": 1500}), options).await.unwrap();
            }
            println!("submitted");
            std::future::pending::<()>().await;
        }
        Some("drain") => loop {
            let mut filter = RunFilter::default();
            filter.limit = Some(1000);
            let page = client.list(filter).await.unwrap();
            if page.items.iter().all(|run| run.status.is_final()) {
                for run in page.items {
                    println!("{}", json!({"id": run.id, "status": run.status, "attempt": run.attempt}));
                }
                return;
            }
            assert!(page.items.iter().all(|run| run.status != RunStatus::Failed));
            tokio::time::sleep(Duration::from_millis(100)).await;
        },
        _ => panic!("usage: engine_app submit N | drain"),
    }
}
