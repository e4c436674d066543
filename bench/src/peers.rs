//! Peers on B1, started here: Redis (Debian `redis-server`, installed with
//! apt-get when missing), Dramatiq and Celery from PyPI in a virtualenv
//! (`$HOME/.cache/taskflow/bench-venv`), driven by `bench/peers/*.py`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use tokio::process::{Child, Command};

/// The port of the benchmark's private Redis.
pub const REDIS_PORT: u16 = 56379;

/// The peers' configuration, for the report.
pub const REDIS_CONFIG: &str = "Redis (Debian `redis-server`) on 127.0.0.1, persistence off \
    (`--save '' --appendonly no`): an enqueue is acknowledged from memory, not fsynced";

async fn run(program: &str, args: &[&str]) -> Result<()> {
    let status = Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .status()
        .await
        .with_context(|| format!("running {program}"))?;
    if !status.success() {
        bail!("{program} {args:?} failed: {status}");
    }
    Ok(())
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// A private Redis; killed when dropped.
#[derive(Debug)]
pub struct Redis {
    _child: Child,
    /// `redis://127.0.0.1:<port>/0`.
    pub url: String,
}

impl Redis {
    /// Installs (apt-get, once) and starts `redis-server`.
    pub async fn start() -> Result<Redis> {
        if !on_path("redis-server") {
            eprintln!("  installing redis-server with apt-get");
            run("apt-get", &["update", "-q"]).await?;
            run("apt-get", &["install", "-y", "-q", "--no-install-recommends", "redis-server"]).await?;
        }
        let port = REDIS_PORT.to_string();
        let child = Command::new("redis-server")
            .args(["--port", &port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting redis-server")?;
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", REDIS_PORT)).await.is_ok() {
                return Ok(Redis { _child: child, url: format!("redis://127.0.0.1:{port}/0") });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("redis-server did not listen on {port}")
    }
}

/// The virtualenv with Dramatiq and Celery; its `python`.
pub async fn venv() -> Result<PathBuf> {
    let home = std::env::var_os("HOME").context("HOME is not set")?;
    let dir = Path::new(&home).join(".cache/taskflow/bench-venv");
    let python = dir.join("bin/python");
    if !python.is_file() {
        eprintln!("  creating the virtualenv {}", dir.display());
        run("python3", &["-m", "venv", &dir.display().to_string()]).await?;
    }
    let ready = Command::new(&python)
        .args(["-c", "import dramatiq, celery, redis"])
        .stderr(Stdio::null())
        .status()
        .await
        .is_ok_and(|s| s.success());
    if !ready {
        eprintln!("  installing dramatiq, celery and redis from PyPI");
        let pip = dir.join("bin/pip");
        run(&pip.display().to_string(), &["install", "-q", "dramatiq[redis]", "celery[redis]", "redis"]).await?;
    }
    Ok(python)
}

/// The versions in the virtualenv, e.g. `dramatiq 1.17.1, celery 5.5.3`.
pub async fn versions(python: &Path) -> String {
    let script = "import dramatiq, celery, redis; print(f'dramatiq {dramatiq.__version__}, celery {celery.__version__}, redis-py {redis.__version__}')";
    match Command::new(python).args(["-c", script]).output().await {
        Ok(out) => String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        Err(_) => String::new(),
    }
}

/// One run of `bench/peers/<script>` with `n` messages; its runs/s.
pub async fn python_b1(python: &Path, script: &str, redis: &Redis, n: usize) -> Result<f64> {
    let value = python_script(python, script, redis, &[n.to_string()]).await?;
    let rate = value["runs_per_s"].as_f64().context("no runs_per_s")?;
    eprintln!("    {script}: {n} runs -> {rate:.0} runs/s");
    Ok(rate)
}

/// One open-loop latency run of `bench/peers/<script>` (B2): `rate` submits
/// a second for `secs` seconds; submit→start p50, p99, max and
/// submit→completed p50, p99, max, in milliseconds.
pub async fn python_b2(python: &Path, script: &str, redis: &Redis, rate: f64, secs: f64) -> Result<Vec<f64>> {
    let value =
        python_script(python, script, redis, &["latency".to_owned(), rate.to_string(), secs.to_string()]).await?;
    let keys =
        ["start_p50_ms", "start_p99_ms", "start_max_ms", "completed_p50_ms", "completed_p99_ms", "completed_max_ms"];
    let figures = keys
        .iter()
        .map(|key| value[*key].as_f64().with_context(|| format!("{script} printed no {key}")))
        .collect::<Result<Vec<f64>>>()?;
    eprintln!("    {script}: start p50 {:.3} p99 {:.3} max {:.3} ms", figures[0], figures[1], figures[2]);
    Ok(figures)
}

/// Runs `bench/peers/<script>` with `args` against `redis`; the JSON line it
/// prints last.
async fn python_script(python: &Path, script: &str, redis: &Redis, args: &[String]) -> Result<serde_json::Value> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("peers");
    let out = Command::new(python)
        .arg(dir.join(script))
        .args(args)
        .env("BENCH_REDIS_URL", &redis.url)
        .current_dir(&dir)
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .output()
        .await
        .with_context(|| format!("running {script}"))?;
    if !out.status.success() {
        bail!("{script} failed: {}", out.status);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().context("no output")?;
    serde_json::from_str(line).with_context(|| format!("{script} printed {line}"))
}

/// Where the Rust peers are built: `CARGO_TARGET_DIR`, else
/// `$HOME/.cache/taskflow/target-bench`.
fn peers_target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || {
            let home = std::env::var_os("HOME").unwrap_or_default();
            Path::new(&home).join(".cache/taskflow/target-bench")
        },
        PathBuf::from,
    )
}

/// Builds the Rust peer workspace `bench/peers/<dir>` (each its own
/// workspace and lock file) in release mode; the path of `binary`.
async fn build_peer(dir: &str, what: &str, binary: &str) -> Result<PathBuf> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("peers").join(dir).join("Cargo.toml");
    let target = peers_target_dir();
    eprintln!("  building {what} (cargo build --release --manifest-path {})", manifest.display());
    let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(["build", "--release", "--quiet", "--manifest-path"])
        .arg(&manifest)
        .env("CARGO_TARGET_DIR", &target)
        .status()
        .await
        .with_context(|| format!("running cargo for {what}"))?;
    if !status.success() {
        bail!("building {what} failed: {status}");
    }
    Ok(target.join("release").join(binary))
}

/// Runs a Rust peer's binary to its end and reads the `runs_per_s` of the
/// JSON line it prints last.
async fn run_peer(command: &mut Command, name: &str, n: usize) -> Result<f64> {
    let out = command
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .output()
        .await
        .with_context(|| format!("running the peer {name}"))?;
    if !out.status.success() {
        bail!("the peer {name} failed: {}", out.status);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().context("no output")?;
    let value: serde_json::Value = serde_json::from_str(line).with_context(|| format!("{name} printed {line}"))?;
    let rate = value["runs_per_s"].as_f64().context("no runs_per_s")?;
    eprintln!("    {name}: {n} runs -> {rate:.0} runs/s");
    Ok(rate)
}

/// Builds the apalis peer (`bench/peers/apalis`); the path of its binary.
pub async fn build_apalis() -> Result<PathBuf> {
    build_peer("apalis", "the apalis peer", "apalis-bench").await
}

/// apalis' settings in the runs below: worker concurrency, pushers, fetch
/// size, poll interval (ms).
pub const APALIS_SETTINGS: (usize, usize, usize, u64) = (256, 1024, 256, 1);

/// One run of the apalis peer with `n` jobs in a fresh directory; runs/s.
pub async fn apalis_b1(binary: &Path, dir: &Path, n: usize) -> Result<f64> {
    let (concurrency, pushers, fetch, poll) = APALIS_SETTINGS;
    let mut command = Command::new(binary);
    command.arg(dir).args([
        n.to_string(),
        concurrency.to_string(),
        pushers.to_string(),
        fetch.to_string(),
        poll.to_string(),
    ]);
    run_peer(&mut command, "apalis", n).await
}

/// Builds the PostgreSQL peers (`bench/peers/postgres`: graphile_worker
/// and apalis-postgres); the path of their binary.
pub async fn build_pg_peers() -> Result<PathBuf> {
    build_peer("postgres", "the PostgreSQL peers", "pg-peers-bench").await
}

/// The PostgreSQL peers' settings in the runs below: worker concurrency,
/// pushers.
pub const PG_PEER_SETTINGS: (usize, usize) = (256, 1024);

/// One run of the PostgreSQL peer `peer` (`graphile` or `apalis`) with `n`
/// jobs in the empty database at `url`; runs/s.
pub async fn pg_peer_b1(binary: &Path, peer: &str, url: &str, n: usize) -> Result<f64> {
    let (concurrency, pushers) = PG_PEER_SETTINGS;
    let mut command = Command::new(binary);
    command.args([peer, url]).args([n.to_string(), concurrency.to_string(), pushers.to_string()]);
    run_peer(&mut command, peer, n).await
}
