//! B4: what an executor adds to a run over doing the same by hand, each pair
//! measured alternately in one process (so both see the same machine): the
//! process executor against a bare spawn of the same binary running the
//! same task (`__run add_numbers`, payload on standard input), and the
//! Docker executor against `docker run --rm -i` of the same worker image
//! with the same limits.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use serde_json::{Value, json};
use taskflow::TaskContext;
use taskflow::executor::{DockerExecutor, DockerExecutorConfig, ProcessExecutor, ProcessExecutorConfig};
use taskflow::registry::TaskDef;
use tokio::io::AsyncWriteExt as _;

/// Median per-run times of one repetition, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Pair {
    /// Through the executor.
    pub ours_ms: f64,
    /// By hand.
    pub bare_ms: f64,
}

const TITLE: &str = "add_numbers";

/// How long after its pool refilled a warm run arrives.
pub const SETTLE: Duration = Duration::from_millis(200);

fn task() -> Result<&'static TaskDef> {
    taskflow::registry::task_def(TITLE).with_context(|| format!("the task `{TITLE}` is not linked in"))
}

fn payload(i: usize) -> Value {
    json!({"a": i, "b": 1})
}

fn median_ms(mut times: Vec<Duration>) -> f64 {
    times.sort();
    times.get(times.len() / 2).map_or(f64::NAN, |t| t.as_secs_f64() * 1e3)
}

/// Checks an executor's result for run `i`.
fn check(i: usize, result: taskflow::registry::TaskResult) -> Result<()> {
    let value = result.map_err(|e| anyhow::anyhow!("run {i} failed: {e}"))?;
    ensure!(value == json!(i + 1), "run {i} returned {value}, not {}", i + 1);
    Ok(())
}

/// Runs `command` with run `i`'s payload on standard input; checks that it
/// printed the result frame.
async fn by_hand(mut command: tokio::process::Command, i: usize) -> Result<()> {
    command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().context("spawning by hand")?;
    let mut stdin = child.stdin.take().context("no stdin")?;
    stdin.write_all(&serde_json::to_vec(&payload(i))?).await?;
    drop(stdin);
    let output = child.wait_with_output().await?;
    let frame: Value = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    if !output.status.success() || frame != json!({"ok": i + 1}) {
        bail!(
            "by hand, run {i} ended {} with {} (stderr: {})",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// `n` runs through an executor (`ours`) and `n` by hand (`bare`'s
/// command), alternately, after one of each to warm up.
async fn alternate<F, Fut>(n: usize, mut ours: F, bare: impl Fn() -> tokio::process::Command) -> Result<Pair>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = taskflow::registry::TaskResult>,
{
    let (mut ours_times, mut bare_times) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for i in 0..=n {
        let start = Instant::now();
        let result = ours(i).await;
        let took = start.elapsed();
        check(i, result)?;
        let command = bare();
        let start = Instant::now();
        by_hand(command, i).await?;
        if i > 0 {
            ours_times.push(took);
            bare_times.push(start.elapsed());
        }
    }
    Ok(Pair { ours_ms: median_ms(ours_times), bare_ms: median_ms(bare_times) })
}

/// `n` runs through the [`ProcessExecutor`] and `n` bare spawns of the same
/// binary, alternately, after one of each to warm up.
pub async fn process(n: usize) -> Result<Pair> {
    let executor = ProcessExecutor::new(ProcessExecutorConfig::default());
    let program = executor.program()?;
    let def = task()?;
    let ours = |i| executor.execute(def, TaskContext::new(format!("b4-process-{i}")), payload(i), None);
    alternate(n, ours, || {
        let mut command = tokio::process::Command::new(&program);
        command.arg("__run").arg(TITLE);
        command
    })
    .await
}

/// The Docker executor's worker image of the task, built if it is missing
/// (once, before any timing), and its tag.
pub async fn docker_image() -> Result<String> {
    let executor = DockerExecutor::new(DockerExecutorConfig::default());
    Ok(executor.image_for(task()?).await.context("building the worker image")?.tag)
}

/// `n` runs through the [`DockerExecutor`] (a fresh container each) and `n`
/// `docker run --rm -i` of the same image with the executor's limits,
/// alternately, after one of each to warm up.
pub async fn docker_cold(n: usize, tag: &str) -> Result<Pair> {
    let config = DockerExecutorConfig::default();
    let executor = DockerExecutor::new(config.clone());
    let def = task()?;
    let memory = config.default_memory_bytes.to_string();
    let cpus = format!("{}", config.default_nano_cpus as f64 / 1e9);
    let pids = config.default_pids.to_string();
    let tmpfs = format!("/tmp:rw,nosuid,nodev,size={},mode=1777", config.tmp_bytes);
    let ours = |i| executor.execute(def, TaskContext::new(format!("b4-docker-{i}")), payload(i), None);
    alternate(n, ours, || {
        let mut command = tokio::process::Command::new("docker");
        command.args(["run", "--rm", "-i", "--network", "none", "--read-only", "--tmpfs", &tmpfs]);
        command.args(["--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--user", "65534:65534"]);
        command.args(["--memory", &memory, "--memory-swap", &memory, "--cpus", &cpus, "--pids-limit", &pids, tag]);
        command
    })
    .await
}

/// `n` runs through a [`DockerExecutor`] with a warm pool of one container:
/// each run arrives [`SETTLE`] after the pool has its container started
/// (provisioned ahead), so it writes its envelope to a waiting worker
/// instead of creating a container. After one run to warm up.
pub async fn docker_warm(n: usize) -> Result<f64> {
    let mut config = DockerExecutorConfig::default();
    config.warm_containers = 1;
    let executor = DockerExecutor::new(config);
    let def = task()?;
    let mut ours = Vec::with_capacity(n);
    for i in 0..=n {
        let deadline = Instant::now() + Duration::from_secs(60);
        while i > 0 && executor.warm_ready(TITLE) == 0 {
            ensure!(Instant::now() < deadline, "no warm container within 60 s");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // The run arrives a while after the refill (its worker waiting on
        // stdin, the previous container's removal done), as runs arriving
        // at a few a second per warm container do.
        tokio::time::sleep(SETTLE).await;
        let start = Instant::now();
        let result = executor.execute(def, TaskContext::new(format!("b4-warm-{i}")), payload(i), None).await;
        let took = start.elapsed();
        check(i, result)?;
        if i > 0 {
            ours.push(took);
        }
    }
    executor.remove_warm().await;
    Ok(median_ms(ours))
}
