//! B1 for apalis: N no-op `add_numbers` jobs pushed concurrently into its
//! SQLite storage (a WAL file on disk, `synchronous=FULL` like TaskFlow's),
//! executed by one apalis worker with concurrency C; prints
//! `{"runs_per_s": …}` from the first push until N jobs ran.
//!
//! `apalis-bench <data dir> <N> [concurrency] [pushers] [fetch size] [poll ms]`

use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use apalis::prelude::*;
use apalis_sql::sqlite::SqliteStorage;
use apalis_sql::sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use serde::{Deserialize, Serialize};

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
async fn main() -> Result<(), Box<dyn std::error::Error>> {
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
        .synchronous(SqliteSynchronous::Full);
    // `setup` switches its connection to synchronous=NORMAL: migrate on a
    // pool of its own, then work on connections that are all FULL.
    let setup = SqlitePoolOptions::new().max_connections(1).connect_with(options.clone()).await?;
    SqliteStorage::setup(&setup).await?;
    setup.close().await;
    let pool = SqlitePoolOptions::new().max_connections(8).connect_with(options).await?;
    // The default (10 jobs a fetch, a fetch every 100 ms) caps a worker at
    // 100 jobs/s; give it room.
    let config = apalis_sql::Config::new(std::any::type_name::<AddNumbers>())
        .set_buffer_size(buffer)
        .set_poll_interval(Duration::from_millis(poll_ms));
    let storage: SqliteStorage<AddNumbers> = SqliteStorage::new_with_config(pool.clone(), config);

    let worker = WorkerBuilder::new("apalis-bench")
        .concurrency(concurrency)
        .backend(storage.clone())
        .build_fn(add_numbers);
    tokio::spawn(async move { Monitor::new().register(worker).run().await });

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
