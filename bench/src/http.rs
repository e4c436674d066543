//! Over HTTP against a `serve`: B2 over REST (open loop), B3 (intake with
//! 64 connections, with `POST /api/v1/echo` and `/health` as ceilings), with
//! a hyper client.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use taskflow::run::RunStatus;
use taskflow::store::{RunFilter, SqliteStore, Store};

use crate::report::{histogram, quantiles_ms};
use crate::server::{Endpoint, Server};

type HttpClient = Client<HttpConnector, Full<Bytes>>;

fn client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new()).pool_max_idle_per_host(256).build(connector)
}

/// `POST /api/v1/tasks` of an `add_numbers` run; the status.
async fn submit(client: &HttpClient, server: &Endpoint, a: u64, b: u64) -> Result<StatusCode> {
    post_run(client, server, "/api/v1/tasks", a, b).await
}

/// `POST` of an `add_numbers` submit's body to `path`; the status.
async fn post_run(client: &HttpClient, server: &Endpoint, path: &str, a: u64, b: u64) -> Result<StatusCode> {
    let body = json!({"task_title": "add_numbers", "payload": {"a": a, "b": b}}).to_string();
    let request = Request::builder()
        .method(Method::POST)
        .uri(format!("{}{path}", server.url))
        .header(AUTHORIZATION, format!("Bearer {}", server.token))
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))?;
    let response = client.request(request).await?;
    let status = response.status();
    response.into_body().collect().await?;
    Ok(status)
}

async fn health(client: &HttpClient, server: &Endpoint) -> Result<StatusCode> {
    let request = Request::builder().uri(format!("{}/health", server.url)).body(Full::new(Bytes::new()))?;
    let response = client.request(request).await?;
    let status = response.status();
    response.into_body().collect().await?;
    Ok(status)
}

fn epoch_ms_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// B2 over REST, in milliseconds: submit→202 (µs-exact), and submit→start
/// and submit→completed from the stored `started_at` / `finished_at`
/// (millisecond resolution; a start no earlier than the 202).
#[derive(Debug, Clone, Copy)]
pub struct RestLatency {
    /// submit→202 p50, p99, max.
    pub ack: (f64, f64, f64),
    /// submit→start p50, p99, max (ms resolution).
    pub start: (f64, f64, f64),
    /// submit→completed p50, p99, max (ms resolution).
    pub completed: (f64, f64, f64),
}

/// B2 over REST: `rate` submits/s for `secs` seconds on a fixed schedule.
pub async fn rest_latency(server: &Server, rate: f64, secs: f64) -> Result<RestLatency> {
    let client = client();
    // Warm the pool and the server.
    let tag = crate::unique_tag();
    for i in 0..16 {
        submit(&client, &server.endpoint, 1_000_000_000 + i, tag).await?;
    }
    let n = (rate * secs).round().max(1.0) as usize;
    let t0 = Instant::now() + Duration::from_millis(100);
    let t0_epoch_ms = epoch_ms_now() + 100.0;
    let sched = move |i: usize| t0 + Duration::from_secs_f64(i as f64 / rate);
    let (ack_tx, mut ack_rx) = tokio::sync::mpsc::unbounded_channel();
    let handle = tokio::runtime::Handle::current();
    let scheduler = {
        let server = Arc::new(server.endpoint.clone());
        let client = client.clone();
        std::thread::spawn(move || {
            for i in 0..n {
                let at = sched(i);
                let now = Instant::now();
                if at > now {
                    std::thread::sleep(at - now);
                }
                let (client, server, ack_tx) = (client.clone(), server.clone(), ack_tx.clone());
                handle.spawn(async move {
                    let status = submit(&client, &server, i as u64, tag).await;
                    let us = Instant::now().saturating_duration_since(sched(i)).as_micros() as u64;
                    let _ = ack_tx.send(status.map(|s| (i, s, us)).map_err(|e| e.to_string()));
                });
            }
        })
    };
    let mut ack = histogram();
    let mut acked_us = vec![0; n];
    for _ in 0..n {
        match ack_rx.recv().await {
            Some(Ok((i, StatusCode::ACCEPTED, us))) => {
                ack.saturating_record(us);
                acked_us[i] = us;
            }
            Some(Ok((_, status, _))) => bail!("a submit was answered {status}"),
            Some(Err(e)) => bail!("a submit failed: {e}"),
            None => bail!("the scheduler stopped early"),
        }
    }
    scheduler.join().map_err(|_| anyhow::anyhow!("the scheduler thread panicked"))?;

    // Read the runs back from the server's store (read-only use).
    let store = SqliteStore::open_in(&server.data_dir)?;
    let deadline = Instant::now() + Duration::from_secs(120);
    let (start, done) = loop {
        let (mut offset, mut seen) = (0, 0usize);
        let (mut s, mut d) = (histogram(), histogram());
        loop {
            let mut filter = RunFilter::default();
            filter.statuses = vec![RunStatus::Completed];
            filter.limit = Some(1000);
            filter.offset = Some(offset);
            let page = store.list(filter).await?;
            let count = page.items.len();
            for run in page.items {
                if run.payload["b"] != json!(tag) {
                    continue;
                }
                let Some(i) = run.payload["a"].as_u64().filter(|i| *i < n as u64) else { continue };
                let scheduled_ms = t0_epoch_ms + i as f64 * 1000.0 / rate;
                // A stored time is truncated to its millisecond: take the
                // middle of it (so each figure is ± 0.5 ms).
                let to_us = |ms: i64| ((ms as f64 + 0.5 - scheduled_ms).max(0.0) * 1000.0) as u64;
                if let (Some(st), Some(fi)) = (run.started_at, run.finished_at) {
                    // A run its submit claimed has the submit's time as
                    // `started_at`, before the commit that made it
                    // running: it starts no earlier than its 202.
                    s.saturating_record(to_us(st.millis()).max(acked_us[i as usize]));
                    d.saturating_record(to_us(fi.millis()));
                    seen += 1;
                }
            }
            if count < 1000 {
                break;
            }
            offset += 1000;
        }
        if seen >= n {
            break (s, d);
        }
        if Instant::now() > deadline {
            bail!("only {seen} of {n} REST runs completed");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    Ok(RestLatency { ack: quantiles_ms(&ack), start: quantiles_ms(&start), completed: quantiles_ms(&done) })
}

/// One B3 measurement: requests/s answered as expected, and latency.
#[derive(Debug, Clone, Copy)]
pub struct Intake {
    /// Requests answered as expected per second.
    pub per_s: f64,
    /// p50, p99, max in milliseconds.
    pub latency: (f64, f64, f64),
    /// Requests answered otherwise (or failed).
    pub errors: u64,
}

/// What B3's closed loops send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `POST /api/v1/tasks` of an `add_numbers` run, expecting 202.
    Submit,
    /// The same body to `POST /api/v1/echo`, expecting 200: the HTTP stack
    /// (token, body limit, JSON both ways) with nothing behind it.
    Echo,
    /// `GET /health`, expecting 200.
    Health,
}

/// B3: `connections` closed loops for `secs` seconds, each sending its next
/// request to `route` as soon as the last is answered.
pub async fn intake(server: &Endpoint, connections: usize, secs: f64, route: Route) -> Result<Intake> {
    let client = client();
    let tag = crate::unique_tag();
    let server = Arc::new(server.clone());
    let stop = Arc::new(AtomicBool::new(false));
    let counter = Arc::new(AtomicU64::new(0));
    let mut loops = tokio::task::JoinSet::new();
    for _ in 0..connections {
        let (client, server, stop, counter) = (client.clone(), server.clone(), stop.clone(), counter.clone());
        loops.spawn(async move {
            let mut h = histogram();
            let (mut ok, mut errors) = (0u64, 0u64);
            while !stop.load(Ordering::Relaxed) {
                let sent = Instant::now();
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let answered = match route {
                    Route::Submit => submit(&client, &server, n, tag).await,
                    Route::Echo => post_run(&client, &server, "/api/v1/echo", n, tag).await,
                    Route::Health => health(&client, &server).await,
                };
                let us = sent.elapsed().as_micros() as u64;
                let expected = if route == Route::Submit { StatusCode::ACCEPTED } else { StatusCode::OK };
                match answered {
                    Ok(status) if status == expected => ok += 1,
                    _ => errors += 1,
                }
                h.saturating_record(us);
            }
            (h, ok, errors)
        });
    }
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = histogram();
    let (mut ok, mut errors) = (0, 0);
    while let Some(joined) = loops.join_next().await {
        let (h, o, e) = joined?;
        all.add(&h).context("merging histograms")?;
        ok += o;
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    Ok(Intake { per_s: ok as f64 / elapsed, latency: quantiles_ms(&all), errors })
}

/// One `GET /api/v1/tasks` (a page of runs and the count of all).
pub async fn list_once(server: &Endpoint) -> Result<()> {
    let request = Request::builder()
        .uri(format!("{}/api/v1/tasks?limit=50", server.url))
        .header(AUTHORIZATION, format!("Bearer {}", server.token))
        .body(Full::new(Bytes::new()))?;
    let response = client().request(request).await?;
    let status = response.status();
    response.into_body().collect().await?;
    if status != StatusCode::OK {
        bail!("GET /api/v1/tasks answered {status}");
    }
    Ok(())
}
