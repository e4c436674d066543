//! The soak: runs flow into a server on PostgreSQL at 200 submits a
//! second (short runs, runs of seconds that outlive heartbeats, runs that
//! fail and are retried) while a fault strikes every 20–40 s, drawn from
//! {`SIGKILL` the server (then restart it), `SIGSTOP` it for 15 s, restart
//! PostgreSQL with `-m immediate`, cut the database for 5 s, hold the
//! database (connections open, nothing answering) for longer than a
//! lease}. A history of what was sent and acknowledged, the tasks' own log
//! of each attempt's start and end, then a checker: nothing acknowledged is
//! lost, nothing unexpected is stored, no submit is stored twice, every run
//! completes within two minutes after the last fault with a result its
//! stored attempt really produced, no attempt starts twice, and the
//! server's memory stays flat. Runs finished by more than one attempt (the
//! at-least-once cost of the faults) are counted and printed.
//!
//! `TASKFLOW_SOAK_SECONDS` sets the length: 60 by default (the version every
//! test run includes); `TASKFLOW_SOAK_SEED` replays a printed seed, and
//! `TASKFLOW_SOAK_FAULTS` (say `hold,kill`) fixes the faults, cycled. The
//! full soak is
//! `TASKFLOW_SOAK_SECONDS=600 cargo test -p taskflow-tests --test it soak -- --nocapture`
//! (under `./scripts/test`'s environment, for PostgreSQL). It uses a
//! PostgreSQL server of its own (`scripts/postgres` on port 25433), so
//! restarting it disturbs no other test. The server's standard error goes
//! to `server.log` in its data directory, printed in part on failure.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use taskflow::store::PostgresStore;

use crate::support::proxy::Proxy;
use crate::support::server::{Server, runs_in_full};

const APP: &str = env!("CARGO_BIN_EXE_reliability_app");
/// Below the ephemeral port range (32768–60999), so no client socket holds it.
const SOAK_PG_PORT: &str = "25433";
/// Submits offered a second.
const RATE: u64 = 200;
/// The lease the soak's server takes, in seconds: a hold outlasts it.
const LEASE_SECONDS: u64 = 5;

/// The run the soak's `n`th submit asks for: mostly short, one in twenty
/// lasting 1–5 s (past several heartbeats), one in ten failing its first
/// one or two attempts.
fn churn_payload(n: u64) -> Value {
    let (millis, fail) = match n.wrapping_mul(2_654_435_761) % 100 {
        0..5 => (1000 + n % 5 * 1000, 0),
        5..15 => (5, 1 + n % 2),
        _ => (n % 20, 0),
    };
    json!({"n": n, "millis": millis, "fail": fail})
}

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
    let lease = LEASE_SECONDS.to_string();
    let args = [
        "--addr",
        addr.as_str(),
        "--lease-seconds",
        lease.as_str(),
        "--heartbeat-seconds",
        "1",
        "--rescue-seconds",
        "1",
        "--max-concurrency",
        "64",
    ];
    let env = [("TASKFLOW_DATABASE_URL", proxied.as_str())];
    let server_log = dir.path().join("server.log");
    let start = || {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&server_log).unwrap();
        Server::start_with_stderr(APP, dir.path(), &args, &env, log)
    };
    let server = Arc::new(Mutex::new(Some(start())));
    let (base, token) = {
        let guard = server.lock().unwrap();
        let s = guard.as_ref().unwrap();
        (s.url.clone(), s.token.clone())
    };
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();

    // The submitter: `RATE` submits a second, each with its own `n`, at
    // most 512 in flight (a stopped server is not buried in connections).
    let history: Arc<Mutex<History>> = Arc::default();
    let end = Instant::now() + Duration::from_secs(seconds);
    let submitter = {
        let (client, base, token, history) = (client.clone(), base.clone(), token.clone(), Arc::clone(&history));
        tokio::spawn(async move {
            let in_flight = Arc::new(tokio::sync::Semaphore::new(512));
            let began = Instant::now();
            let mut submits = tokio::task::JoinSet::new();
            let mut n = 0u64;
            while Instant::now() < end {
                // Paced by the count due so far: a late wake-up catches up.
                if n >= began.elapsed().as_millis() as u64 * RATE / 1000 {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    continue;
                }
                let permit = Arc::clone(&in_flight).acquire_owned().await.unwrap();
                history.lock().unwrap().0.insert(n);
                let body = json!({"task_title": "churn", "payload": churn_payload(n), "unique": false});
                let request = client.post(format!("{base}/api/v1/tasks")).bearer_auth(&token).json(&body);
                let history = Arc::clone(&history);
                submits.spawn(async move {
                    let _permit = permit;
                    if let Ok(response) = request.send().await
                        && response.status() == StatusCode::ACCEPTED
                        && let Ok(run) = response.json::<Value>().await
                    {
                        history.lock().unwrap().1.insert(n, run["task_id"].as_str().unwrap().to_owned());
                    }
                });
                n += 1;
            }
            while submits.join_next().await.is_some() {}
        })
    };

    // The faults.
    let seed = std::env::var("TASKFLOW_SOAK_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1
    });
    let mut dice = Dice(seed);
    // A fixed sequence of faults (cycled), to try one on purpose.
    let chosen: Vec<String> = std::env::var("TASKFLOW_SOAK_FAULTS")
        .map(|list| list.split(',').map(str::to_owned).collect())
        .unwrap_or_default();
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
        let drawn = ["kill", "stop", "pg-restart", "cut", "hold"][dice.roll(5) as usize];
        let fault = chosen.get(faults.len() % chosen.len().max(1)).map_or(drawn, String::as_str);
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
            "cut" => {
                proxy.cut(true);
                tokio::time::sleep(Duration::from_secs(5)).await;
                proxy.cut(false);
            }
            _ => {
                proxy.hold(true);
                tokio::time::sleep(Duration::from_secs(LEASE_SECONDS + 3)).await;
                proxy.hold(false);
            }
        }
        last_fault = Instant::now();
    }
    submitter.await.unwrap();

    // The checker: waits until every stored run is final (counted through
    // the list's `total`), then reads them all.
    let (sent, acked) = history.lock().unwrap().clone();
    let deadline = last_fault.max(Instant::now()) + Duration::from_secs(120);
    let total = |query: &'static str| {
        let request = client.get(format!("{base}/api/v1/tasks?limit=1{query}")).bearer_auth(&token);
        async move { request.send().await.ok()?.json::<Value>().await.ok()?["total"].as_u64() }
    };
    loop {
        let (all, completed, failed) =
            (total("").await, total("&status=completed").await, total("&status=failed").await);
        if let (Some(all), Some(completed), Some(failed)) = (all, completed, failed)
            && completed + failed == all
        {
            break;
        }
        let tail = std::fs::read_to_string(&server_log).unwrap_or_default();
        let tail: Vec<&str> = tail.lines().rev().take(20).collect();
        assert!(
            Instant::now() < deadline,
            "runs not final two minutes after the last fault ({faults:?}, seed {seed}); the server's last lines: {tail:#?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let mut runs: Vec<Value> = Vec::new();
    loop {
        let page: Value = client
            .get(format!("{base}/api/v1/tasks?limit=500&offset={}", runs.len()))
            .bearer_auth(&token)
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let items = page["items"].as_array().cloned().unwrap_or_default();
        if items.is_empty() {
            break;
        }
        runs.extend(items);
    }
    // Lists carry summaries: the payloads come with each run.
    let runs = runs_in_full(&client, &base, &token, &runs).await;
    let failed: Vec<&Value> = runs.iter().filter(|r| r["status"] != "completed").collect();
    assert!(
        failed.is_empty(),
        "{} runs did not complete (seed {seed}, faults {faults:?}): {:#?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );

    // What the attempts themselves did: `start <run> <attempt>` and `done
    // <run> <attempt>`.
    let mut starts: HashMap<(String, u64), u32> = HashMap::new();
    let mut dones: HashMap<String, HashSet<u64>> = HashMap::new();
    for line in std::fs::read_to_string(dir.path().join("churn.log")).unwrap().lines() {
        let parts: Vec<&str> = line.split(' ').collect();
        let (Some(&what), Some(&id), Some(attempt)) =
            (parts.first(), parts.get(1), parts.get(2).and_then(|a| a.parse().ok()))
        else {
            continue; // a line cut by a kill
        };
        match what {
            "start" => *starts.entry((id.to_owned(), attempt)).or_default() += 1,
            _ => {
                dones.entry(id.to_owned()).or_default().insert(attempt);
            }
        }
    }
    let started_twice: Vec<_> = starts.iter().filter(|(_, count)| **count > 1).map(|(key, _)| key).collect();
    assert!(started_twice.is_empty(), "attempts started twice: {started_twice:?}");
    let unearned: Vec<&Value> = runs
        .iter()
        .filter(|r| {
            let id = r["task_id"].as_str().unwrap();
            !dones.get(id).is_some_and(|attempts| attempts.contains(&r["attempt"].as_u64().unwrap()))
        })
        .collect();
    assert!(
        unearned.is_empty(),
        "completed with no end of the stored attempt: {:#?}",
        &unearned[..unearned.len().min(5)]
    );
    let finished_twice = dones.values().filter(|attempts| attempts.len() > 1).count();
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
        "soak: {seconds}s, seed {seed}, faults {faults:?}; {} sent ({:.0}/s), {} acknowledged, {} stored; lost {}, \
         unexpected {}, stored twice {}, finished twice {finished_twice}; memory {memory:?}",
        sent.len(),
        sent.len() as f64 / seconds as f64,
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
