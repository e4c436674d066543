//! The soak: runs flow into a server on PostgreSQL for a while (about one
//! every two seconds) while a fault strikes every 20–40 s, drawn from
//! {`SIGKILL` the server (then restart it), `SIGSTOP` it for 15 s, restart
//! PostgreSQL with `-m immediate`, cut the database for 5 s}. A history of
//! what was sent and acknowledged, then a checker: nothing acknowledged is
//! lost, nothing unexpected is stored, no submit is stored twice, every run
//! is final within two minutes after the last fault, and the server's
//! memory stays flat.
//!
//! `TASKFLOW_SOAK_SECONDS` sets the length: 60 by default (the version every
//! test run includes); the full soak is
//! `TASKFLOW_SOAK_SECONDS=600 cargo test -p taskflow-tests --test it soak -- --nocapture`
//! (under `./scripts/test`'s environment, for PostgreSQL). It uses a
//! PostgreSQL server of its own (`scripts/postgres` on port 25433), so
//! restarting it disturbs no other test.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use taskflow::store::PostgresStore;

use crate::support::proxy::Proxy;
use crate::support::server::Server;

const APP: &str = env!("CARGO_BIN_EXE_reliability_app");
/// Below the ephemeral port range (32768–60999), so no client socket holds it.
const SOAK_PG_PORT: &str = "25433";

/// What the submitter sent (each `n`) and which were acknowledged (`n` →
/// run id).
type History = (HashSet<u64>, HashMap<u64, String>);

/// A small xorshift: the fault schedule, reproducible from its printed seed.
struct Dice(u64);

impl Dice {
    fn roll(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below
    }
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn soak_under_faults_loses_nothing() {
    // The shared server's presence says PostgreSQL is wanted here; the soak
    // then starts its own.
    if crate::support::backends::postgres_server().is_none() {
        return;
    }
    let seconds: u64 = std::env::var("TASKFLOW_SOAK_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    let admin =
        tokio::task::spawn_blocking(|| crate::support::backends::private_postgres(SOAK_PG_PORT, &[])).await.unwrap();
    let url = PostgresStore::create_test_database(&admin).await.expect("a fresh test database");
    let host = url.split('@').nth(1).unwrap().split('/').next().unwrap().to_owned();
    let proxy = Proxy::start(host.parse().unwrap()).await;
    let proxied = url.replacen(&format!("@{host}/"), &format!("@{}/", proxy.addr), 1);
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let args = ["--addr", addr.as_str(), "--lease-seconds", "5", "--heartbeat-seconds", "1", "--rescue-seconds", "1"];
    let env = [("TASKFLOW_DATABASE_URL", proxied.as_str())];
    let start = || Server::start_in(APP, dir.path(), &args, &env);
    let server = Arc::new(Mutex::new(Some(start())));
    let (base, token) = {
        let guard = server.lock().unwrap();
        let s = guard.as_ref().unwrap();
        (s.url.clone(), s.token.clone())
    };
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();

    // The submitter: one run every two seconds, each with its own `n`.
    let history: Arc<Mutex<History>> = Arc::default();
    let end = Instant::now() + Duration::from_secs(seconds);
    let submitter = {
        let (client, base, token, history) = (client.clone(), base.clone(), token.clone(), Arc::clone(&history));
        tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < end {
                history.lock().unwrap().0.insert(n);
                let body =
                    json!({"task_title": "effect", "payload": {"n": n, "millis": 500 + n % 4 * 500}, "unique": false});
                let sent = client.post(format!("{base}/api/v1/tasks")).bearer_auth(&token).json(&body).send().await;
                if let Ok(response) = sent
                    && response.status() == StatusCode::ACCEPTED
                    && let Ok(run) = response.json::<Value>().await
                {
                    history.lock().unwrap().1.insert(n, run["task_id"].as_str().unwrap().to_owned());
                }
                n += 1;
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        })
    };

    // The faults.
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
    let mut dice = Dice(seed);
    let mut faults = Vec::new();
    let mut memory: Vec<(u32, u64)> = Vec::new();
    let mut last_fault = Instant::now();
    loop {
        let wait = Duration::from_secs(20 + dice.roll(21));
        if Instant::now() + wait >= end {
            break;
        }
        tokio::time::sleep(wait).await;
        let pid = server.lock().unwrap().as_ref().unwrap().pid();
        if let Some(kib) = rss_kib(pid) {
            memory.push((pid, kib));
        }
        let fault = ["kill", "stop", "pg-restart", "cut"][dice.roll(4) as usize];
        faults.push(fault);
        match fault {
            "kill" => {
                let old = server.lock().unwrap().take().unwrap();
                old.kill();
                let fresh = start();
                *server.lock().unwrap() = Some(fresh);
            }
            "stop" => {
                let _ = std::process::Command::new("kill").args(["-STOP", &pid.to_string()]).status();
                tokio::time::sleep(Duration::from_secs(15)).await;
                let _ = std::process::Command::new("kill").args(["-CONT", &pid.to_string()]).status();
            }
            "pg-restart" => {
                tokio::task::spawn_blocking(|| {
                    crate::support::backends::private_postgres(SOAK_PG_PORT, &["--restart-immediate"])
                })
                .await
                .unwrap();
            }
            _ => {
                proxy.cut(true);
                tokio::time::sleep(Duration::from_secs(5)).await;
                proxy.cut(false);
            }
        }
        last_fault = Instant::now();
    }
    submitter.await.unwrap();

    // The checker.
    let (sent, acked) = history.lock().unwrap().clone();
    let deadline = last_fault.max(Instant::now()) + Duration::from_secs(120);
    let runs = loop {
        let mut runs = Vec::new();
        let mut ok = true;
        loop {
            let page = client
                .get(format!("{base}/api/v1/tasks?limit=500&offset={}", runs.len()))
                .bearer_auth(&token)
                .send()
                .await;
            let Ok(page) = page else {
                ok = false;
                break;
            };
            let Ok(page) = page.json::<Value>().await else {
                ok = false;
                break;
            };
            let items = page["items"].as_array().cloned().unwrap_or_default();
            if items.is_empty() {
                break;
            }
            runs.extend(items);
        }
        if ok && runs.iter().all(|r| r["status"] == "completed") {
            break runs;
        }
        assert!(Instant::now() < deadline, "runs not final two minutes after the last fault ({faults:?}, seed {seed})");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let mut stored: HashMap<u64, Vec<String>> = HashMap::new();
    for run in &runs {
        let n = run["payload"]["n"].as_u64().unwrap();
        stored.entry(n).or_default().push(run["task_id"].as_str().unwrap().to_owned());
    }
    let lost: Vec<&u64> = acked.keys().filter(|n| !stored.get(n).is_some_and(|ids| ids.contains(&acked[n]))).collect();
    let unexpected: Vec<&u64> = stored.keys().filter(|n| !sent.contains(n)).collect();
    let twice: Vec<&u64> = stored.iter().filter(|(_, ids)| ids.len() > 1).map(|(n, _)| n).collect();
    let pid = server.lock().unwrap().as_ref().unwrap().pid();
    if let Some(kib) = rss_kib(pid) {
        memory.push((pid, kib));
    }
    println!(
        "soak: {seconds}s, seed {seed}, faults {faults:?}; {} sent, {} acknowledged, {} stored; lost {}, unexpected {}, stored twice {}; memory {memory:?}",
        sent.len(),
        acked.len(),
        runs.len(),
        lost.len(),
        unexpected.len(),
        twice.len()
    );
    assert!(lost.is_empty(), "lost: {lost:?}");
    assert!(unexpected.is_empty(), "unexpected: {unexpected:?}");
    assert!(twice.is_empty(), "stored twice: {twice:?}");
    assert!(!acked.is_empty(), "the soak submitted something");
    // Memory: within each process's life, growth under 50 MiB.
    for (pid, kib) in &memory {
        let first = memory.iter().find(|(p, _)| p == pid).map(|(_, k)| *k).unwrap();
        assert!(kib.saturating_sub(first) < 50 * 1024, "server {pid} grew from {first} KiB to {kib} KiB");
    }
    drop(server.lock().unwrap().take());
    let _ = PostgresStore::drop_test_database(&admin, &url).await;
}
