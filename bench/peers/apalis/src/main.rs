//! B1 for apalis 1.x: N no-op `add_numbers` jobs pushed concurrently into
//! its SQLite storage (apalis-sqlite, a WAL file on disk, `synchronous=FULL`
//! like TaskFlow's), executed by one apalis worker with concurrency C;
//! prints `{"runs_per_s": …, "n": N}` from the first push until N jobs ran.
//!
//! `apalis-bench <data dir> <N> [concurrency] [pushers] [fetch size] [poll ms]`
//!
//! Settings (the fastest of those tried): a sqlx pool of 8 connections
//! shared by pushers and worker, a busy timeout of 600 s; a fetch of up to
//! `fetch size` jobs (default 100; apalis' own default is 10) whenever the
//! worker has room, and a poll every `poll ms` (default 1) when the last
//! fetch came back empty. (Tried on 10,000 jobs: concurrency/pushers/fetch/
//! poll 256/1024/256/1 → 316 jobs/s, 256/1024/256/10 → 290, 32/128/32/10 →
//! 294. The process is CPU-bound in SQLite's JSON functions: apalis-sqlite
//! locks and acknowledges a batch with one statement over `json_each` of a
//! JSON array.)

use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use apalis::prelude::*;
use apalis_sqlite::{Config, SqliteStorage};
use serde::{Deserialize, Serialize};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

static DONE: AtomicU64 = AtomicU64::new(0);

#[derive(Debug, Clone, Serialize, Deserialize)]
struct AddNumbers {
    a: i64,
    b: i64,
}

async fn add_numbers(job: AddNumbers) -> i64 {
    DONE.fetch_add(1, Ordering::Relaxed);
    job.a + job.b
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::PathBuf::from(&args[1]);
    let n: u64 = args[2].parse()?;
    let concurrency: usize = args.get(3).map_or(Ok(16), |c| c.parse())?;
    let pushers: u64 = args.get(4).map_or(Ok(64), |c| c.parse())?;
    let buffer: usize = args.get(5).map_or(Ok(100), |c| c.parse())?;
    let poll_ms: u64 = args.get(6).map_or(Ok(1), |c| c.parse())?;
    std::fs::create_dir_all(&dir)?;
    let url = format!("sqlite://{}", dir.join("apalis.db").display());
    let options = SqliteConnectOptions::from_str(&url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        // sqlx's 5 s default fails pushes with "database is locked" while
        // eight connections take turns at the write lock under this load.
        .busy_timeout(Duration::from_secs(600));
    // `setup` switches its connection to synchronous=OFF: migrate on a pool
    // of its own, then work on connections that are all FULL.
    let setup = SqlitePoolOptions::new().max_connections(1).connect_with(options.clone()).await?;
    SqliteStorage::setup(&setup).await?;
    setup.close().await;
    let pool = SqlitePoolOptions::new().max_connections(8).connect_with(options).await?;
    let config = Config::default().queue("add_numbers").batch_size(buffer);
    let storage: SqliteStorage<AddNumbers> = SqliteStorage::new(&pool).with_config(config);
    let backend = storage.clone().poll_with_interval(Duration::from_millis(poll_ms));
    let worker = WorkerBuilder::new("apalis-bench").backend(backend).concurrency(concurrency).build(add_numbers);
    tokio::spawn(async move {
        if let Err(error) = worker.run().await {
            eprintln!("apalis worker stopped: {error:?}");
        }
    });

    let start = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..pushers {
        let mut storage = storage.clone();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return;
                }
                storage.push(AddNumbers { a: i as i64, b: 1 }).await.expect("push");
            }
        }));
    }
    for task in tasks {
        task.await?;
    }
    let deadline = Instant::now() + Duration::from_secs(1800);
    while DONE.load(Ordering::Relaxed) < n {
        if Instant::now() > deadline {
            return Err(format!("only {} of {n} done", DONE.load(Ordering::Relaxed)).into());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    println!("{}", serde_json::json!({"runs_per_s": n as f64 / elapsed, "n": n}));
    Ok(())
}
