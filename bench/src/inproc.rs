//! In-process workloads over `Client` and the embedded `Engine`: B1
//! (throughput) and B2 in-process (open-loop latency from `RunEvent`s).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use serde_json::json;
use taskflow::client::Client;
use taskflow::engine::{Engine, EngineConfig, RunEvent};
use taskflow::run::RunStatus;
use taskflow::store::{RunFilter, Store};
use tokio::sync::broadcast::error::RecvError;

use crate::report::histogram;

/// How many `add_numbers` runs this process has executed (any engine).
pub static EXECUTED: AtomicU64 = AtomicU64::new(0);

/// The engine settings the workloads use: the defaults, with retention off
/// (nothing is pruned mid-run) and `max_concurrency` as given.
pub fn engine_config(max_concurrency: usize) -> EngineConfig {
    let mut config = EngineConfig::default();
    config.max_concurrency = max_concurrency;
    config.retention = None;
    config
}

/// How many runs of the store are completed.
async fn completed(store: &Arc<dyn Store>) -> Result<u64> {
    let mut filter = RunFilter::default();
    filter.statuses = vec![RunStatus::Completed];
    filter.limit = Some(1);
    Ok(store.list(filter).await.context("counting completed runs")?.total)
}

/// One B1 measurement.
#[derive(Debug, Clone, Copy)]
pub struct Throughput {
    /// Runs/s from the first submit until all are stored completed.
    pub per_s: f64,
    /// CPU time of the whole process per run, µs.
    pub cpu_us: f64,
    /// CPU time of the SQLite writer thread per run, µs (0 on PostgreSQL).
    pub writer_us: f64,
}

/// B1: `n` runs submitted by `inflight` concurrent submitters and executed
/// by the embedded engine; runs/s from the first submit until the store
/// holds all `n` completed.
pub async fn throughput(
    store: Arc<dyn Store>,
    title: &'static str,
    n: usize,
    inflight: usize,
    max_concurrency: usize,
) -> Result<Throughput> {
    let engine = Engine::start(store.clone(), engine_config(max_concurrency))?;
    let client = Client::new(engine.clone());
    let tag = crate::unique_tag();
    let base = EXECUTED.load(Ordering::SeqCst);
    let next = Arc::new(AtomicUsize::new(0));
    let cpu_before = cpu_seconds();
    let start = Instant::now();
    let mut submitters = tokio::task::JoinSet::new();
    for _ in 0..inflight.min(n).max(1) {
        let client = client.clone();
        let next = next.clone();
        submitters.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return Ok::<_, anyhow::Error>(());
                }
                client.submit(title, json!({"a": i, "b": tag})).await.context("submitting")?;
            }
        });
    }
    while let Some(joined) = submitters.join_next().await {
        joined??;
    }
    let submitted = start.elapsed();
    // Executed first (cheap to watch), then stored as completed.
    let deadline = Instant::now() + Duration::from_secs(600);
    while EXECUTED.load(Ordering::SeqCst) - base < n as u64 {
        if Instant::now() > deadline {
            bail!("only {} of {n} runs executed in 10 minutes", EXECUTED.load(Ordering::SeqCst) - base);
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    loop {
        let done = completed(&store).await?;
        if done >= n as u64 {
            break;
        }
        if Instant::now() > deadline {
            bail!("only {done} of {n} runs completed in 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let elapsed = start.elapsed();
    let cpu_after = cpu_seconds();
    let cpu_us = (cpu_after.0 - cpu_before.0) * 1e6 / n as f64;
    let writer_us = (cpu_after.1 - cpu_before.1).max(0.0) * 1e6 / n as f64;
    let per_s = n as f64 / elapsed.as_secs_f64();
    eprintln!(
        "    {n} runs: submitted in {:.2}s, completed in {:.2}s -> {per_s:.0} runs/s; CPU {cpu_us:.1} µs/run (writer {writer_us:.1})",
        submitted.as_secs_f64(),
        elapsed.as_secs_f64(),
    );
    stop(&engine).await;
    Ok(Throughput { per_s, cpu_us, writer_us })
}

/// Stops the engine's loops, so the next repetition runs alone.
async fn stop(engine: &Engine) {
    engine.shutdown(Duration::from_secs(5)).await;
}

/// B2 in-process: latencies of one open-loop window, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Latency {
    /// submit→ack (the submit's future resolved: durable) p50, p99, max.
    pub ack: (f64, f64, f64),
    /// submit→start (`Running` event) p50, p99, max.
    pub start: (f64, f64, f64),
    /// submit→completed (`Completed` event) p50, p99, max.
    pub completed: (f64, f64, f64),
}

/// B2 in-process: `rate` runs/s for `secs` seconds on a fixed schedule
/// (a dedicated thread spawns each submit at its time); each latency is
/// measured from the scheduled time, so a stall counts for every run it
/// delays.
pub async fn latency(store: Arc<dyn Store>, rate: f64, secs: f64, max_concurrency: usize) -> Result<Latency> {
    let engine = Engine::start(store, engine_config(max_concurrency))?;
    let client = Client::new(engine.clone());
    let n = (rate * secs).round().max(1.0) as usize;
    let tag = crate::unique_tag();
    let mut events = client.subscribe();
    let t0 = Instant::now() + Duration::from_millis(100);
    let sched = move |i: usize| t0 + Duration::from_secs_f64(i as f64 / rate);

    let watcher = tokio::spawn(async move {
        let (mut start, mut done) = (histogram(), histogram());
        let mut lagged = 0;
        let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(secs + 60.0);
        while done.len() < n as u64 {
            let event = tokio::select! {
                event = events.recv() => event,
                () = tokio::time::sleep_until(deadline) => break,
            };
            let now = Instant::now();
            match event {
                Ok(RunEvent::Status(run)) if run.payload["b"] == json!(tag) => {
                    let Some(i) = run.payload["a"].as_u64() else { continue };
                    let us = now.saturating_duration_since(sched(i as usize)).as_micros() as u64;
                    match run.status {
                        RunStatus::Running => start.saturating_record(us),
                        RunStatus::Completed => done.saturating_record(us),
                        _ => {}
                    }
                }
                Ok(_) => {}
                Err(RecvError::Lagged(k)) => lagged += k,
                Err(RecvError::Closed) => break,
            }
        }
        (start, done, lagged)
    });

    let (ack_tx, mut ack_rx) = tokio::sync::mpsc::unbounded_channel();
    let handle = tokio::runtime::Handle::current();
    let scheduler = {
        let client = client.clone();
        std::thread::spawn(move || {
            for i in 0..n {
                let at = sched(i);
                let now = Instant::now();
                if at > now {
                    std::thread::sleep(at - now);
                }
                let client = client.clone();
                let ack_tx = ack_tx.clone();
                handle.spawn(async move {
                    let result = client.submit("add_numbers", json!({"a": i, "b": tag})).await;
                    let us = Instant::now().saturating_duration_since(sched(i)).as_micros() as u64;
                    let _ = ack_tx.send(result.map(|_| us).map_err(|e| e.to_string()));
                });
            }
        })
    };
    let mut ack = histogram();
    for _ in 0..n {
        match ack_rx.recv().await {
            Some(Ok(us)) => ack.saturating_record(us),
            Some(Err(e)) => bail!("a submit failed: {e}"),
            None => bail!("the scheduler stopped early"),
        }
    }
    scheduler.join().map_err(|_| anyhow::anyhow!("the scheduler thread panicked"))?;
    let (start, done, lagged) = watcher.await?;
    if lagged > 0 || done.len() < n as u64 {
        bail!("events were missed ({lagged} lagged; {} of {n} completions seen)", done.len());
    }
    stop(&engine).await;
    let q = crate::report::quantiles_ms;
    Ok(Latency { ack: q(&ack), start: q(&start), completed: q(&done) })
}

/// CPU time used so far: the whole process (from `/proc/self/stat`,
/// 10 ms ticks) and the store's writer threads (`taskflow-sqlite…`, from
/// their `schedstat`, ns), in seconds.
pub fn cpu_seconds() -> (f64, f64) {
    let process = crate::server::cpu_seconds("self");
    let mut writer = 0.0;
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for task in tasks.flatten() {
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            if comm.starts_with("taskflow-sqlite") {
                let schedstat = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
                if let Some(ns) = schedstat.split_whitespace().next().and_then(|ns| ns.parse::<f64>().ok()) {
                    writer += ns / 1e9;
                }
            }
        }
    }
    (process, writer)
}
