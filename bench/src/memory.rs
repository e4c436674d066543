//! B5: resident memory of `serve`, idle on an empty store and with many
//! pending runs (stored with a start a day away, so nothing claims them).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context as _, Result};
use serde_json::json;
use taskflow::client::{Client, SubmitOptions};
use taskflow::store::SqliteStore;

use crate::server::Server;

/// RSS in MiB: idle on an empty store, and idle over `pending` pending runs
/// (after one `GET /api/v1/tasks`, which counts them all).
#[derive(Debug, Clone, Copy)]
pub struct Memory {
    /// A fresh `serve` on an empty store, settled.
    pub idle: f64,
    /// A fresh `serve` on the store with the pending runs, settled.
    pub pending: f64,
}

/// Measures both, in fresh data directories under `root`.
pub async fn measure(root: &std::path::Path, pending: usize) -> Result<Memory> {
    let empty = root.join("b5-empty");
    let server = Server::start(&empty).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = server.rss_mib()?;
    server.stop().await?;

    let full = root.join("b5-pending");
    fill(&full, pending).await?;
    let server = Server::start(&full).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    crate::http::list_once(&server.endpoint).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pending_rss = server.rss_mib()?;
    server.stop().await?;
    Ok(Memory { idle, pending: pending_rss })
}

/// Stores `n` pending runs through a client of the store alone.
async fn fill(dir: &std::path::Path, n: usize) -> Result<()> {
    let store = SqliteStore::open_in(dir)?;
    let client = Client::for_store(Arc::new(store));
    let next = Arc::new(AtomicUsize::new(0));
    let mut submitters = tokio::task::JoinSet::new();
    for _ in 0..1024.min(n).max(1) {
        let (client, next) = (client.clone(), next.clone());
        submitters.spawn(async move {
            let mut options = SubmitOptions::default();
            options.delay = Some(Duration::from_secs(86_400));
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return Ok::<_, anyhow::Error>(());
                }
                client
                    .submit_with("add_numbers", json!({"a": i, "b": 0}), options.clone())
                    .await
                    .context("storing a pending run")?;
            }
        });
    }
    while let Some(joined) = submitters.join_next().await {
        joined??;
    }
    Ok(())
}
