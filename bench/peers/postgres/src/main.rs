//! B1 on PostgreSQL for two Rust peers, graphile_worker and apalis-postgres:
//! N no-op `add_numbers` jobs pushed from P concurrent tasks into the peer's
//! tables in an empty database, executed by one worker with concurrency C;
//! prints `{"runs_per_s": …, "n": N}` from the first push until the N-th
//! handler ran. The server's `synchronous_commit` (on) is left as it is.
//!
//! `pg-peers-bench <graphile|apalis> <postgres url> <N> [concurrency] [pushers]`
//!
//! Settings (the fastest reasonable ones):
//! - both: a sqlx pool of at most 16 connections shared by pushers and worker;
//! - graphile_worker: LISTEN/NOTIFY delivery (its default), poll interval
//!   10 ms (down from 1 s; only the fallback when notifications are quiet),
//!   a local queue of C jobs fetched in batches, and completions batched
//!   over 2 ms (both off by default; its documentation says they raise
//!   throughput);
//! - apalis-postgres: LISTEN/NOTIFY (`with_pubsub`) plus a 10 ms interval
//!   poll, fetch batch size C (default 10), tasks run by the worker
//!   under a concurrency limit of C.

use std::error::Error;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sqlx::postgres::PgPoolOptions;

static DONE: AtomicU64 = AtomicU64::new(0);

const POOL: u32 = 16;
const POLL: Duration = Duration::from_millis(10);
/// graphile_worker's completion batching window ("1–5 ms is recommended").
const BATCH_DELAY: Duration = Duration::from_millis(2);

#[derive(Debug, Clone, Serialize, Deserialize)]
struct AddNumbers {
    a: i64,
    b: i64,
}

impl graphile_worker::TaskHandler for AddNumbers {
    const IDENTIFIER: &'static str = "add_numbers";

    async fn run(self, _ctx: graphile_worker::WorkerContext) -> impl graphile_worker::IntoTaskHandlerResult {
        // graphile_worker handlers return no value: compute it and drop it.
        DONE.fetch_add(1, Ordering::Relaxed);
        std::hint::black_box(self.a + self.b);
    }
}

async fn add_numbers(job: AddNumbers) -> i64 {
    DONE.fetch_add(1, Ordering::Relaxed);
    job.a + job.b
}

type BoxError = Box<dyn Error + Send + Sync>;

/// Pushes jobs 0..n from `pushers` tasks, each calling `push(i)`.
async fn push_all<F, Fut>(n: u64, pushers: u64, push: F) -> Result<(), BoxError>
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<(), BoxError>> + Send,
{
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..pushers {
        let next = next.clone();
        let push = push.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return Ok::<(), BoxError>(());
                }
                push(i).await?;
            }
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(())
}

async fn wait_done(n: u64, start: Instant) -> Result<f64, BoxError> {
    let deadline = start + Duration::from_secs(1800);
    while DONE.load(Ordering::Relaxed) < n {
        if Instant::now() > deadline {
            return Err(format!("only {} of {n} done after 30 minutes", DONE.load(Ordering::Relaxed)).into());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(start.elapsed().as_secs_f64())
}

async fn graphile(url: &str, n: u64, concurrency: usize, pushers: u64) -> Result<f64, BoxError> {
    let pool = PgPoolOptions::new().max_connections(POOL).connect(url).await?;
    // `init` runs graphile_worker's migrations.
    let worker = graphile_worker::WorkerOptions::default()
        .concurrency(concurrency)
        .poll_interval(POLL)
        .local_queue(graphile_worker::LocalQueueConfig::default().with_size(concurrency))
        .complete_job_batch_delay(BATCH_DELAY)
        .listen_os_shutdown_signals(false)
        .define_job::<AddNumbers>()
        .pg_pool(pool)
        .init()
        .await?;
    let utils = Arc::new(worker.create_utils());
    tokio::spawn(async move {
        if let Err(error) = worker.run().await {
            eprintln!("graphile_worker stopped: {error:?}");
        }
    });
    let start = Instant::now();
    push_all(n, pushers, move |i| {
        let utils = utils.clone();
        async move {
            utils.add_job(AddNumbers { a: i as i64, b: 1 }, Default::default()).await?;
            Ok(())
        }
    })
    .await?;
    wait_done(n, start).await
}

async fn apalis(url: &str, n: u64, concurrency: usize, pushers: u64) -> Result<f64, BoxError> {
    use apalis::prelude::*;
    use apalis_postgres::{Config, PostgresStorage};

    let pool = PgPoolOptions::new().max_connections(POOL).connect(url).await?;
    PostgresStorage::setup(&pool).await?;
    let config = Config::default().queue("add_numbers").batch_size(concurrency);
    let storage: PostgresStorage<AddNumbers> = PostgresStorage::new(&pool).with_config(config);
    let backend = storage.clone().with_pubsub().poll_with_interval(POLL);
    let worker = WorkerBuilder::new("pg-peers-bench").backend(backend).concurrency(concurrency).build(add_numbers);
    tokio::spawn(async move {
        if let Err(error) = worker.run().await {
            eprintln!("apalis worker stopped: {error:?}");
        }
    });
    let start = Instant::now();
    push_all(n, pushers, move |i| {
        let mut storage = storage.clone();
        async move {
            storage.push(AddNumbers { a: i as i64, b: 1 }).await?;
            Ok(())
        }
    })
    .await?;
    wait_done(n, start).await
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        return Err("usage: pg-peers-bench <graphile|apalis> <postgres url> <N> [concurrency] [pushers]".into());
    }
    let url = &args[2];
    let n: u64 = args[3].parse()?;
    let concurrency: usize = args.get(4).map_or(Ok(256), |c| c.parse())?;
    let pushers: u64 = args.get(5).map_or(Ok(1024), |c| c.parse())?;
    let elapsed = match args[1].as_str() {
        "graphile" => graphile(url, n, concurrency, pushers).await?,
        "apalis" => apalis(url, n, concurrency, pushers).await?,
        other => return Err(format!("unknown peer {other}").into()),
    };
    println!("{}", serde_json::json!({"runs_per_s": n as f64 / elapsed, "n": n}));
    Ok(())
}
