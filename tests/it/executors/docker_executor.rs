//! The Docker executor against the machine's real Docker engine: worker
//! images built from scratch and reused, rebuilt for a new binary (and the
//! old one pruned), and each run in a hardened container — results,
//! failures, panics, timeouts, cancels, the memory limit, no network unless
//! asked, a read-only root, a non-root user, only the declared environment —
//! with no container left behind.
//!
//! Without a reachable engine these tests print `SKIPPED` and pass; under
//! `./scripts/test` (`TASKFLOW_REQUIRE_DOCKER=1`) they must run.
//!
//! Every container a test makes carries `taskflow.test=<id>`; a [`Marked`]
//! guard removes them (and the test's own images) even when an assertion
//! fails. The worker images of the shared test app `taskflow-it` stay, as a
//! server's would: a later run of the suite reuses them, and the executor
//! prunes them once the binary changes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use taskflow::executor::{DockerExecutor, DockerExecutorConfig};
use taskflow::{ExecutorKind, MemorySink, TaskContext, TaskError};

use crate::executors::process_executor::worker;

/// A hang guard, not a timing assertion; image builds are slow on a cold
/// engine.
const WAIT: Duration = Duration::from_secs(300);

/// The app name of the shared worker images.
const APP: &str = "taskflow-it";

/// A test's mark on its containers and images; removes them when dropped.
struct Marked {
    id: String,
}

impl Marked {
    fn new() -> Marked {
        Marked { id: format!("{}-{}", std::process::id(), uuid_like()) }
    }

    fn label(&self) -> String {
        format!("taskflow.test={}", self.id)
    }

    /// The containers carrying this test's label, running or not.
    fn containers(&self) -> Vec<String> {
        docker(&["ps", "-aq", "--filter", &format!("label={}", self.label())])
    }

    /// The containers of this test's runs (not the step containers of its
    /// image builds): those with an owner.
    fn run_containers(&self) -> Vec<String> {
        docker(&["ps", "-aq", "--filter", &format!("label={}", self.label()), "--filter", "label=taskflow.owner"])
    }

    fn assert_no_container_left(&self) {
        let left = self.containers();
        if !left.is_empty() {
            let mut args = vec!["inspect", "--format", "{{.State.Status}} {{.Created}} {{json .Config.Labels}}"];
            args.extend(left.iter().map(String::as_str));
            panic!("containers left behind: {:?}", docker(&args));
        }
    }
}

impl Drop for Marked {
    fn drop(&mut self) {
        let containers = self.containers();
        if !containers.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(containers.iter().map(String::as_str));
            docker(&args);
        }
    }
}

/// A short random id (no extra dependency for tests).
fn uuid_like() -> String {
    use std::hash::{BuildHasher, Hasher};
    let n = std::collections::hash_map::RandomState::new().build_hasher().finish();
    format!("{n:016x}")
}

/// Runs the docker CLI; its output lines.
fn docker(args: &[&str]) -> Vec<String> {
    let output = Command::new("docker").args(args).output().expect("the docker CLI runs");
    String::from_utf8_lossy(&output.stdout).lines().map(str::to_owned).filter(|l| !l.is_empty()).collect()
}

fn config(marked: &Marked, app: &str, program: &Path) -> DockerExecutorConfig {
    let mut config = DockerExecutorConfig::default();
    config.program = Some(program.to_path_buf());
    config.app = Some(app.to_owned());
    config.labels = vec![("taskflow.test".to_owned(), marked.id.clone())];
    config
}

/// An executor for the shared test app, or `None` (after a loud `SKIPPED`)
/// when no engine is reachable and the test command does not require one.
async fn executor(marked: &Marked) -> Option<DockerExecutor> {
    let executor = DockerExecutor::new(config(marked, APP, &worker()));
    available(&executor).await.then_some(executor)
}

async fn available(executor: &DockerExecutor) -> bool {
    let availability = executor.availability().await;
    if availability.available {
        return true;
    }
    if std::env::var_os("TASKFLOW_REQUIRE_DOCKER").is_some() {
        panic!("TASKFLOW_REQUIRE_DOCKER is set, but Docker is not available: {}", availability.detail);
    }
    println!("SKIPPED: Docker is not available: {}", availability.detail);
    false
}

fn context() -> (TaskContext, Arc<MemorySink>) {
    let sink = Arc::new(MemorySink::default());
    (TaskContext::with_sink(format!("run-{}", uuid_like()), 1, sink.clone()), sink)
}

async fn run_on(executor: &DockerExecutor, title: &str, payload: Value) -> (Result<Value, TaskError>, Arc<MemorySink>) {
    let (ctx, sink) = context();
    let def = taskflow::task_def(title).unwrap();
    let result = tokio::time::timeout(WAIT, executor.execute(def, ctx, payload, None)).await.expect("no hang");
    (result, sink)
}

fn kind_and_message(result: Result<Value, TaskError>) -> (String, String) {
    let error = result.expect_err("the run fails");
    (error.kind().to_owned(), error.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_comes_back_and_the_image_is_reused() {
    let marked = Marked::new();
    let Some(executor) = executor(&marked).await else { return };
    let (result, _) = run_on(&executor, "exec.add", json!({"a": 2, "b": 3})).await;
    assert_eq!(result.unwrap(), json!(5));
    let def = taskflow::task_def("exec.add").unwrap();
    let image = executor.image_for(def).await.unwrap();
    assert!(!image.built, "the second run does not rebuild");
    assert!(image.tag.starts_with("taskflow-taskflow-it/exec.add:"), "{}", image.tag);
    // A restart (a new executor, nothing in memory) finds it by its tag.
    let restarted = DockerExecutor::new(config(&marked, APP, &worker()));
    let again = restarted.image_for(def).await.unwrap();
    assert_eq!((again.built, &again.id), (false, &image.id));
    let labels = docker(&["image", "inspect", "-f", "{{json .Config.Labels}}", &image.tag]);
    let labels: Value = serde_json::from_str(&labels[0]).unwrap();
    assert_eq!(labels["taskflow.app"], "taskflow-it");
    assert_eq!(labels["taskflow.task"], "exec.add");
    assert_eq!(labels["taskflow.hash"], image.hash.as_str());
    marked.assert_no_container_left();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_and_panics_keep_their_kind() {
    let marked = Marked::new();
    let Some(executor) = executor(&marked).await else { return };
    let (result, _) = run_on(&executor, "exec.fail", json!({"message": "no luck"})).await;
    assert_eq!(kind_and_message(result), ("failed".to_owned(), "no luck".to_owned()));
    let (result, _) = run_on(&executor, "exec.panic", json!({})).await;
    assert_eq!(result.unwrap_err(), TaskError::Panicked { message: "boom in the worker".to_owned() });
    let (result, _) = run_on(&executor, "exec.exit", json!({"code": 101})).await;
    let (kind, message) = kind_and_message(result);
    assert_eq!(kind, "crashed");
    assert!(message.contains("exited with code 101 without a result"), "{message}");
    marked.assert_no_container_left();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_payload_goes_through() {
    let marked = Marked::new();
    let Some(executor) = executor(&marked).await else { return };
    let text = "y".repeat(4 << 20);
    let (result, _) = run_on(&executor, "exec.len", json!({ "text": text })).await;
    assert_eq!(result.unwrap(), json!(4 << 20));
    marked.assert_no_container_left();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_stream_into_the_run() {
    let marked = Marked::new();
    let Some(executor) = executor(&marked).await else { return };
    let (result, sink) = run_on(&executor, "exec.chatty", json!({"n": 3})).await;
    assert_eq!(result.unwrap(), json!(3));
    let lines: Vec<(String, String)> = sink.lines().into_iter().map(|l| (l.level.to_string(), l.message)).collect();
    assert!(lines.contains(&("warn".to_owned(), "line 2".to_owned())), "{lines:?}");
    assert!(lines.contains(&("info".to_owned(), "printed, not a frame".to_owned())), "{lines:?}");
    marked.assert_no_container_left();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_kills_and_removes_the_container() {
    let marked = Marked::new();
    let Some(executor) = executor(&marked).await else { return };
    let (ctx, _) = context();
    let def = taskflow::task_def("exec.sleep").unwrap();
    // Built first, so the timeout measures the run, not the build.
    executor.image_for(def).await.unwrap();
    let started = std::time::Instant::now();
    let run = executor.execute(def, ctx, json!({"millis": 600_000}), Some(Duration::from_secs(5)));
    let result = tokio::time::timeout(WAIT, run).await.expect("no hang");
    let took = started.elapsed();
    assert_eq!(result.unwrap_err().kind(), "timeout");
    // The reliability suite's bound: killed at 5 ± 2 s (the timeout counts
    // from the container's start; creating it and removing it come on top).
    assert!(took >= Duration::from_secs(5) && took <= Duration::from_secs(7), "killed after {took:?}");
    marked.assert_no_container_left();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_kills_and_removes_the_container() {
    let marked = Marked::new();
    let Some(executor) = executor(&marked).await else { return };
    let (ctx, sink) = context();
    let def = taskflow::task_def("exec.sleep").unwrap();
    let running = {
        let (executor, ctx) = (executor.clone(), ctx.clone());
        tokio::spawn(async move { executor.execute(def, ctx, json!({"millis": 600_000}), None).await })
    };
    // The container's first line arrives while it runs.
    let started = tokio::time::timeout(WAIT, async {
        while !sink.lines().iter().any(|l| l.message.starts_with("pid ")) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    started.await.expect("the container logs while running");
    let containers = marked.run_containers();
    assert_eq!(containers.len(), 1, "one container runs");
    assert_hardened(&containers[0]);
    ctx.cancel();
    let result = tokio::time::timeout(WAIT, running).await.expect("no hang").unwrap();
    assert_eq!(result.unwrap_err(), TaskError::Cancelled);
    marked.assert_no_container_left();
}

/// What the engine says about a running container: the hardened defaults.
fn assert_hardened(id: &str) {
    let inspected = docker(&["inspect", id]);
    let inspected: Value = serde_json::from_str(&inspected.join("\n")).unwrap();
    let host = &inspected[0]["HostConfig"];
    assert_eq!(host["NetworkMode"], "none");
    assert_eq!(host["ReadonlyRootfs"], true);
    assert_eq!(host["CapDrop"], json!(["ALL"]));
    assert_eq!(host["SecurityOpt"], json!(["no-new-privileges"]));
    assert_eq!(host["Privileged"], false);
    assert_eq!(host["Memory"], 512 * 1024 * 1024);
    assert_eq!(host["MemorySwap"], host["Memory"], "no swap beyond the limit");
    assert_eq!(host["NanoCpus"], 1_000_000_000_i64);
    assert_eq!(host["PidsLimit"], 128);
    assert!(host["Tmpfs"]["/tmp"].as_str().unwrap().contains("size="), "{host}");
    assert!(host["Binds"].is_null() || host["Binds"] == json!([]), "nothing mounted: {host}");
    assert_eq!(inspected[0]["Mounts"], json!([]), "nothing mounted");
    let config = &inspected[0]["Config"];
    assert_eq!(config["User"], "65534:65534");
    let env: Vec<&str> = config["Env"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    // Docker adds its default PATH; nothing of the server's comes along.
    assert!(env.iter().all(|e| e.starts_with("TASKFLOW_") || e.starts_with("PATH=")), "{env:?}");
    assert_eq!(config["Labels"]["taskflow.app"], APP);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_limit_kills_with_a_clear_message() {
    let marked = Marked::new();
    let Some(executor) = executor(&marked).await else { return };
    // A 2 GiB allocation, killed at the limit.
    let (result, _) = run_on(&executor, "exec.hog", json!({"mib": 2048})).await;
    let (kind, message) = kind_and_message(result);
    assert_eq!(kind, "out_of_memory");
    assert!(message.contains("killed: memory limit 32 MiB exceeded"), "{message}");
    marked.assert_no_container_left();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_is_hardened_by_default() {
    let marked = Marked::new();
    let Some(executor) = executor(&marked).await else { return };
    let (result, _) = run_on(&executor, "exec.probe", json!({})).await;
    let probe: crate::executor_tasks::Probe = serde_json::from_value(result.unwrap()).unwrap();
    assert_eq!(probe.uid, "65534", "not root");
    assert_eq!(probe.interfaces, ["lo"], "no network but loopback");
    assert!(!probe.root_writable, "the root file system is read-only");
    assert!(probe.tmp_writable, "/tmp is writable");
    marked.assert_no_container_left();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_may_ask_for_a_network() {
    let marked = Marked::new();
    let Some(executor) = executor(&marked).await else { return };
    let (result, _) = run_on(&executor, "exec.probe_net", json!({})).await;
    let probe: crate::executor_tasks::Probe = serde_json::from_value(result.unwrap()).unwrap();
    assert!(probe.interfaces.iter().any(|i| i != "lo"), "a network interface: {:?}", probe.interfaces);
    assert_eq!(probe.uid, "65534");
    marked.assert_no_container_left();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_declared_variables_reach_the_container() {
    let marked = Marked::new();
    let Some(executor) = executor(&marked).await else { return };
    let (result, _) = run_on(&executor, "exec.env", json!({})).await;
    // Cargo sets both for the test process; only the declared one passes.
    assert_eq!(std::env::var("CARGO_PKG_NAME").unwrap(), "taskflow-tests");
    assert!(std::env::var("CARGO_MANIFEST_DIR").is_ok());
    assert_eq!(result.unwrap(), json!(["taskflow-tests", null]));
    marked.assert_no_container_left();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_base_image_is_a_clear_error() {
    let marked = Marked::new();
    let Some(executor) = executor(&marked).await else { return };
    let (result, _) = run_on(&executor, "exec.based", json!({})).await;
    let (kind, message) = kind_and_message(result);
    assert_eq!(kind, "base_image_missing");
    assert!(message.contains("taskflow-test/no-such-image:1"), "{message}");
    marked.assert_no_container_left();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_may_run_on_a_local_base_image() {
    let marked = Marked::new();
    let app = format!("taskflow-it-base-{}", marked.id);
    let executor = DockerExecutor::new(config(&marked, &app, &worker()));
    if !available(&executor).await {
        return;
    }
    // A base image of this engine, built here (nothing can be pulled): one
    // file, no libraries, no shell.
    let dockerfile = "FROM scratch\nCOPY marker /etc/taskflow-base-marker\n";
    // Dropped in reverse: the task's images go first, then the base.
    let _base = build_base_image(&marked, "taskflow-it-base:1", dockerfile, "from the base image");
    let _images = RemoveImages { app: app.clone() };
    let (result, _) = run_on(&executor, "exec.on_base", json!({})).await;
    assert_eq!(result.unwrap(), json!("from the base image"));
    marked.assert_no_container_left();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_image_build_says_what_the_daemon_said() {
    let marked = Marked::new();
    let app = format!("taskflow-it-broken-{}", marked.id);
    let executor = DockerExecutor::new(config(&marked, &app, &worker()));
    if !available(&executor).await {
        return;
    }
    // A base image whose `ONBUILD` step runs a program it lacks: every
    // image built on it fails, with the daemon's message.
    let dockerfile = "FROM scratch\nCOPY marker /marker\nONBUILD RUN [\"/taskflow-it-does-not-exist\"]\n";
    let _base = build_base_image(&marked, "taskflow-it-broken-base:1", dockerfile, "base");
    let _images = RemoveImages { app: app.clone() };
    let (result, _) = run_on(&executor, "exec.on_broken_base", json!({})).await;
    let (kind, message) = kind_and_message(result);
    assert_eq!(kind, "image_build", "{message}");
    assert!(message.contains("taskflow-it-does-not-exist"), "the daemon's own words: {message}");
    marked.assert_no_container_left();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_over_the_cap_is_a_clear_failure() {
    let marked = Marked::new();
    let mut config = config(&marked, APP, &worker());
    config.max_result_bytes = 1024;
    let executor = DockerExecutor::new(config);
    if !available(&executor).await {
        return;
    }
    let (result, _) = run_on(&executor, "exec.big", json!({"bytes": 100_000})).await;
    assert_eq!(kind_and_message(result).0, "result_too_large");
    marked.assert_no_container_left();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_binary_gets_a_new_image_and_the_old_one_goes() {
    let marked = Marked::new();
    let app = format!("taskflow-it-rebuild-{}", marked.id);
    let first = DockerExecutor::new(config(&marked, &app, &worker()));
    if !available(&first).await {
        return;
    }
    let _images = RemoveImages { app: app.clone() };
    let def = taskflow::task_def("exec.add").unwrap();
    let old = first.image_for(def).await.unwrap();
    assert!(old.built);

    // Another build of the binary: the same program with bytes appended.
    let dir = tempfile::tempdir().unwrap();
    let changed: PathBuf = dir.path().join("executor_app");
    let mut bytes = std::fs::read(worker()).unwrap();
    bytes.extend_from_slice(b"another build");
    std::fs::write(&changed, bytes).unwrap();
    std::fs::set_permissions(&changed, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let second = DockerExecutor::new(config(&marked, &app, &changed));
    let (result, _) = run_on(&second, "exec.add", json!({"a": 1, "b": 1})).await;
    assert_eq!(result.unwrap(), json!(2));
    let new = second.image_for(def).await.unwrap();
    assert_ne!(new.hash, old.hash);
    assert_ne!(new.id, old.id);
    let mut tags =
        docker(&["images", "--format", "{{.Repository}}:{{.Tag}}", "--filter", &format!("label=taskflow.app={app}")]);
    tags.sort();
    // The task's image and the layer with the binary it builds on.
    let mut expected = vec![new.tag.clone(), format!("taskflow-{app}:{}", new.hash)];
    expected.sort();
    assert_eq!(tags, expected, "only the new binary's images are left");
    marked.assert_no_container_left();
}

/// Removes one image by name.
struct RemoveImage(String);

/// Builds the local base image `tag` (nothing can be pulled) from
/// `dockerfile` and a file `marker` holding `marker`, labelled as the
/// test's; removed when the guard drops.
fn build_base_image(marked: &Marked, tag: &str, dockerfile: &str, marker: &str) -> RemoveImage {
    let context = tempfile::tempdir().unwrap();
    std::fs::write(context.path().join("marker"), marker).unwrap();
    std::fs::write(context.path().join("Dockerfile"), dockerfile).unwrap();
    let built = Command::new("docker")
        .env("DOCKER_BUILDKIT", "0")
        .args(["build", "-q", "-t", tag, "--label", &marked.label()])
        .arg(context.path())
        .output()
        .unwrap();
    assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
    RemoveImage(tag.to_owned())
}

impl Drop for RemoveImage {
    fn drop(&mut self) {
        docker(&["rmi", "-f", &self.0]);
    }
}

/// Removes the images of an app of one test.
struct RemoveImages {
    app: String,
}

impl Drop for RemoveImages {
    fn drop(&mut self) {
        let images = docker(&["images", "-q", "--filter", &format!("label=taskflow.app={}", self.app)]);
        if !images.is_empty() {
            let mut args = vec!["rmi", "-f"];
            args.extend(images.iter().map(String::as_str));
            docker(&args);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_of_a_dead_process_are_removed() {
    let marked = Marked::new();
    let app = format!("taskflow-it-leftover-{}", marked.id);
    let executor = DockerExecutor::new(config(&marked, &app, &worker()));
    if !available(&executor).await {
        return;
    }
    let _images = RemoveImages { app: app.clone() };
    let image = executor.image_for(taskflow::task_def("exec.add").unwrap()).await.unwrap();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_owned();
    // A pid no process has (above the kernel's default pid_max).
    let dead_owner = format!("taskflow.owner={host}/4194399/0");
    let alive_owner = "taskflow.owner=another-host/1/0".to_owned();
    for owner in [&dead_owner, &alive_owner] {
        let app_label = format!("taskflow.app={app}");
        docker(&["create", "--label", &marked.label(), "--label", &app_label, "--label", owner, &image.tag]);
    }
    assert_eq!(marked.containers().len(), 2);
    assert_eq!(executor.remove_leftovers().await.unwrap(), 1);
    let left = docker(&[
        "ps",
        "-a",
        "--format",
        "{{.Label \"taskflow.owner\"}}",
        "--filter",
        &format!("label={}", marked.label()),
    ]);
    assert_eq!(left, ["another-host/1/0"], "only the dead process's container is removed");
}

/// Runs without an engine: no `SKIPPED`, on every machine.
#[tokio::test]
async fn an_unreachable_engine_says_where_it_looked_and_what_to_do() {
    let marked = Marked::new();
    let mut config = config(&marked, APP, &worker());
    config.host = Some("unix:///nonexistent/docker.sock".to_owned());
    let executor = DockerExecutor::new(config);
    let availability = executor.availability().await;
    assert!(!availability.available);
    assert!(availability.detail.contains("/nonexistent/docker.sock"), "{}", availability.detail);
    let (result, _) = run_on(&executor, "exec.add", json!({"a": 1, "b": 2})).await;
    let (kind, message) = kind_and_message(result);
    assert_eq!(kind, "docker_unavailable");
    assert!(message.contains("unix:///nonexistent/docker.sock") && message.contains("DOCKER_HOST"), "{message}");
}

/// Through the engine: a run submitted for the Docker executor is claimed
/// and executed in a container.
/// A client of an engine on a fresh SQLite store in `dir`, with the test's
/// Docker executor; `tune` adjusts the rest of its configuration. Submits
/// with the returned options go to Docker.
fn docker_engine(
    marked: &Marked,
    dir: &Path,
    tune: impl FnOnce(&mut taskflow::engine::EngineConfig),
) -> (taskflow::client::Client, taskflow::client::SubmitOptions) {
    use taskflow::engine::{Engine, EngineConfig};
    let store = Arc::new(taskflow::store::SqliteStore::open_in(dir).unwrap());
    let mut config = EngineConfig::default();
    config.poll_interval = Duration::from_millis(50);
    config.docker = self::config(marked, APP, &worker());
    tune(&mut config);
    let client = taskflow::client::Client::new(Engine::start(store, config).unwrap());
    let mut options = taskflow::client::SubmitOptions::default();
    options.executor = Some(ExecutorKind::Docker);
    (client, options)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_runs_docker_runs() {
    let marked = Marked::new();
    let Some(_) = executor(&marked).await else { return };
    let dir = tempfile::tempdir().unwrap();
    let (client, options) = docker_engine(&marked, dir.path(), |_| {});
    let run = client.submit_with("exec.add", json!({"a": 20, "b": 22}), options.clone()).await.unwrap();
    let done = client.wait(run.id, WAIT).await.unwrap();
    assert_eq!(done.result, Some(json!(42)), "{done:?}");

    let cancelled = client.submit_with("exec.sleep", json!({"millis": 600_000}), options).await.unwrap();
    let running = tokio::time::timeout(WAIT, async {
        while marked.run_containers().is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    running.await.expect("the run's container starts");
    client.cancel(cancelled.id).await.unwrap();
    let gone = tokio::time::timeout(WAIT, async {
        while !marked.containers().is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    gone.await.expect("a cancelled run's container is removed");
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .unwrap()
        .trim()
        .trim_end_matches(" kB")
        .trim()
        .parse()
        .unwrap()
}

/// A container flooding 100 MB of output: the stored log stops at its cap
/// with a warning, the server's memory stays within 50 MB of where it was,
/// and a normal run beside it completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_output_is_capped_and_contained() {
    let marked = Marked::new();
    let Some(_) = executor(&marked).await else { return };
    let dir = tempfile::tempdir().unwrap();
    let (client, options) = docker_engine(&marked, dir.path(), |config| config.max_log_bytes = 256 * 1024);
    // Warm: the image exists before memory is measured.
    let warm = client.submit_with("exec.add", json!({"a": 1, "b": 1}), options.clone()).await.unwrap();
    client.wait(warm.id, WAIT).await.unwrap();
    let before = rss_kib();
    let flood = client.submit_with("exec.flood", json!({"mib": 100}), options.clone()).await.unwrap();
    let beside = client.submit_with("exec.add", json!({"a": 20, "b": 22}), options).await.unwrap();
    assert_eq!(client.wait(beside.id, WAIT).await.unwrap().result, Some(json!(42)), "a normal run beside it");
    let done = client.wait(flood.id, Duration::from_secs(300)).await.unwrap();
    assert_eq!(done.result, Some(json!(100)), "{done:?}");
    let after = rss_kib();
    assert!(after < before + 50 * 1024, "memory grew from {before} KiB to {after} KiB");
    // The log writer batches: give it a moment to store the last lines.
    let lines = tokio::time::timeout(WAIT, async {
        loop {
            let lines = client.logs(flood.id, 0, 10_000).await.unwrap();
            if lines.last().is_some_and(|l| l.message.contains("log truncated")) {
                return lines;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the truncation warning is stored");
    let stored: usize = lines.iter().map(|l| l.message.len()).sum();
    assert!(stored < 256 * 1024 + 1024, "the stored log stops at its cap: {stored} bytes");
    assert_eq!(lines.iter().filter(|l| l.message.contains("log truncated")).count(), 1);
    marked.assert_no_container_left();
}

/// The walls hold: a task spawning tasks without end is stopped by the pids
/// limit, `/tmp` ends at its size, `/` and `/usr` are read-only; each is a
/// clear error inside the task, and the run itself completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_cannot_reach_beyond_its_limits() {
    let marked = Marked::new();
    let Some(executor) = executor(&marked).await else { return };
    let (result, _) = run_on(&executor, "exec.walls", json!({})).await;
    let report = result.unwrap();
    let threads: usize = report["threads"].as_str().unwrap().parse().unwrap();
    assert!(threads < 256, "the pids limit stops a bomb: {report}");
    assert!(report["threads_refused"].is_string(), "{report}");
    assert!(report["tmp_past_its_size"].as_str().unwrap().contains("No space left"), "{report}");
    for path in ["root", "usr"] {
        assert!(report[path].as_str().unwrap().contains("Read-only file system"), "{path}: {report}");
    }
    marked.assert_no_container_left();
}

/// A poison run in a container — it exits 137 every time — makes exactly
/// its three attempts, then fails with the reason, while a normal run beside
/// it completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_container_run_stops_after_its_attempts() {
    let marked = Marked::new();
    let Some(_) = executor(&marked).await else { return };
    let dir = tempfile::tempdir().unwrap();
    let (client, mut options) = docker_engine(&marked, dir.path(), |_| {});
    options.retries = Some(2);
    options.retry_delay = Some(Duration::from_millis(100));
    let poison = client.submit_with("exec.exit", json!({"code": 137}), options.clone()).await.unwrap();
    let beside = client.submit_with("exec.add", json!({"a": 1, "b": 2}), options).await.unwrap();
    assert_eq!(client.wait(beside.id, WAIT).await.unwrap().result, Some(json!(3)));
    let done = client.wait(poison.id, Duration::from_secs(300)).await.unwrap();
    assert_eq!(done.status.as_str(), "failed", "{done:?}");
    assert_eq!(done.attempt, 3, "exactly three attempts: {done:?}");
    let error = done.error.unwrap();
    assert!(error.message.contains("137"), "the reason names the exit: {error:?}");
    marked.assert_no_container_left();
}

/// Waits (at most [`WAIT`]) until `done` holds.
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + WAIT;
    while !done() {
        assert!(std::time::Instant::now() < deadline, "waited {WAIT:?} for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The containers of a test waiting in a warm pool.
fn warm_containers(marked: &Marked) -> Vec<String> {
    docker(&[
        "ps",
        "-aq",
        "--no-trunc",
        "--filter",
        &format!("label={}", marked.label()),
        "--filter",
        "label=taskflow.warm",
    ])
}

/// An executor keeping one warm `exec.identity` container, after a first
/// run (which finds none waiting, creates its own and fills the pool behind
/// it), with that container's id; `None` (after `SKIPPED`) without Docker.
async fn warm_pool_of_one(marked: &Marked) -> Option<(DockerExecutor, Vec<String>)> {
    let mut config = config(marked, APP, &worker());
    config.warm_containers = 1;
    let executor = DockerExecutor::new(config);
    if !available(&executor).await {
        return None;
    }
    let def = taskflow::task_def("exec.identity").unwrap();
    let (ctx, _) = context();
    let first = ctx.run_id().to_owned();
    let result = executor.execute(def, ctx, json!({}), None).await.unwrap();
    assert_eq!((&result["run_id"], &result["attempt"]), (&json!(first), &json!(1)), "{result}");
    eventually("a warm container", || executor.warm_ready("exec.identity") == 1).await;
    let waiting = warm_containers(marked);
    assert_eq!(waiting.len(), 1, "{waiting:?}");
    Some((executor, waiting))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_pool_serves_a_run_from_a_started_container_and_refills() {
    let marked = Marked::new();
    let Some((executor, waiting)) = warm_pool_of_one(&marked).await else { return };
    let def = taskflow::task_def("exec.identity").unwrap();
    let state = docker(&["inspect", "-f", "{{.State.Status}} {{.HostConfig.ReadonlyRootfs}}", &waiting[0]]);
    assert_eq!(state, ["running true"], "started ahead, hardened like any run's");

    // The next run is served by that container, which learns its run from
    // the envelope on its stdin, and is removed after it.
    let sink = Arc::new(MemorySink::default());
    let ctx = TaskContext::with_sink("run-served-warm", 3, sink);
    let result = executor.execute(def, ctx, json!({}), None).await.unwrap();
    assert_eq!((&result["run_id"], &result["attempt"]), (&json!("run-served-warm"), &json!(3)), "{result}");
    let host = result["host"].as_str().unwrap();
    assert!(!host.is_empty() && waiting[0].starts_with(host), "ran in the warm container {}: {result}", waiting[0]);
    // Removed in the background once its outcome is in: a warm container
    // serves one run.
    eventually("the served container's removal", || {
        docker(&["ps", "-aq", "--no-trunc"]).iter().all(|id| *id != waiting[0])
    })
    .await;

    // Another takes its place.
    eventually("a new warm container", || executor.warm_ready("exec.identity") == 1).await;
    let refilled = warm_containers(&marked);
    assert!(refilled.len() == 1 && refilled[0] != waiting[0], "{refilled:?}");
    executor.remove_warm().await;
    assert!(warm_containers(&marked).is_empty());
    marked.assert_no_container_left();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_warm_containers_are_reaped() {
    let marked = Marked::new();
    let mut config = config(&marked, APP, &worker());
    config.warm_containers = 2;
    config.warm_idle = Duration::from_secs(1);
    let executor = DockerExecutor::new(config);
    if !available(&executor).await {
        return;
    }
    let (result, _) = run_on(&executor, "exec.add", json!({"a": 1, "b": 1})).await;
    assert_eq!(result.unwrap(), json!(2));
    // Filled to two, then removed once idle past a second.
    eventually("the pool to fill", || warm_containers(&marked).len() == 2 || executor.warm_ready("exec.add") == 2)
        .await;
    eventually("idle containers to be reaped", || {
        executor.warm_ready("exec.add") == 0 && warm_containers(&marked).is_empty()
    })
    .await;
    marked.assert_no_container_left();
}

/// The warm containers `serve` with process id `pid` keeps for `app`.
fn warm_containers_of(app: &str, pid: u32) -> Vec<String> {
    let filters = ["--filter", "label=taskflow.warm"];
    let ids = docker(
        &[&["ps", "-aq", "--no-trunc", "--filter", &format!("label=taskflow.app={app}")][..], &filters].concat(),
    );
    ids.into_iter()
        .filter(|id| {
            let owner = docker(&["inspect", "-f", "{{index .Config.Labels \"taskflow.owner\"}}", id]);
            owner.first().is_some_and(|o| o.contains(&format!("/{pid}/")))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_keeps_a_warm_container_per_docker_task_and_removes_it_when_stopped() {
    let marked = Marked::new();
    if executor(&marked).await.is_none() {
        return;
    }
    let app = "simple_tasks";
    let server =
        crate::support::server::Server::start_binary(env!("CARGO_BIN_EXE_simple_tasks"), &["--docker-warm", "1"], &[]);
    let client = server.client();
    let body = json!({"task_title": "add_numbers", "payload": {"a": 2, "b": 3}, "executor": "docker"});
    let run = server.submit(body.clone()).await;
    // The first run builds the app's worker image (the whole binary sent to
    // the engine): bounded by what a build takes on a loaded machine, not
    // by the 30 s a run gets elsewhere (it ran out once, at load 8).
    let within = Duration::from_secs(180);
    let run =
        crate::support::server::wait_final_within(&client, &server, run["task_id"].as_str().unwrap(), within).await;
    assert_eq!((&run["status"], &run["result"]), (&json!("completed"), &json!(5)), "{run}");
    // The pool fills behind the first run.
    let pid = server.pid();
    eventually("a warm container", || warm_containers_of(app, pid).len() == 1).await;
    let waiting = warm_containers_of(app, pid);

    // The next run takes it; another replaces it.
    let run = server.submit(body).await;
    let run = crate::support::server::wait_final(&client, &server, run["task_id"].as_str().unwrap()).await;
    assert_eq!((&run["status"], &run["result"]), (&json!("completed"), &json!(5)), "{run}");
    eventually("a fresh warm container", || {
        let now = warm_containers_of(app, pid);
        now.len() == 1 && now != waiting
    })
    .await;

    // Stopping removes the pool's containers.
    assert!(server.stop().success());
    assert_eq!(warm_containers_of(app, pid), Vec::<String>::new(), "no warm container outlives its server");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_container_that_died_while_waiting_is_not_handed_a_run() {
    let marked = Marked::new();
    let Some((executor, waiting)) = warm_pool_of_one(&marked).await else { return };
    let def = taskflow::task_def("exec.identity").unwrap();
    docker(&["kill", &waiting[0]]);

    // The run does not go to the dead container: it gets one of its own.
    let (ctx, _) = context();
    let run_id = ctx.run_id().to_owned();
    let result = executor.execute(def, ctx, json!({}), None).await.expect("the run succeeds");
    assert_eq!(result["run_id"], json!(run_id), "{result}");
    assert!(!waiting[0].starts_with(result["host"].as_str().unwrap()), "not in the dead container: {result}");
    eventually("the dead container's removal", || !docker(&["ps", "-aq", "--no-trunc"]).contains(&waiting[0])).await;
    eventually("a live warm container again", || executor.warm_ready("exec.identity") == 1).await;
    executor.remove_warm().await;
    marked.assert_no_container_left();
}
