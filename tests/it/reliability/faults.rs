//! Faults around the store: the PostgreSQL server dropping every connection
//! of a running engine, the database refusing connections while runs finish,
//! a report whose write (or its acknowledgement) is lost, and an app started
//! against a database it cannot reach.
//!
//! What must hold whatever happens: every run reaches `completed`, none is
//! lost, and no attempt executes twice — a run executes again only under a
//! new, higher attempt, after the store re-queued it.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use taskflow::client::{Client, SubmitOptions};
use taskflow::engine::{Engine, EngineConfig};
use taskflow::registry::BoxFuture;
use taskflow::run::{Run, RunId, RunStatus};
use taskflow::store::{self, PostgresStore, Report, RunFilter, SqliteStore, Store};
use taskflow::{TaskContext, task};

use crate::support::store_hooks::{Hooked, Hooks};

/// Generous: the whole suite shares two cores.
const WAIT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------
// The task, and what it did

/// `(run id, attempt, "start" | "done")`, for every execution in this process.
static EXECUTIONS: Mutex<Vec<(String, u32, &'static str)>> = Mutex::new(Vec::new());

fn executions() -> std::sync::MutexGuard<'static, Vec<(String, u32, &'static str)>> {
    EXECUTIONS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Works for a while, recording its start and end.
#[task(title = "faults.slow_effect")]
fn slow_effect(ctx: &TaskContext, n: u32, millis: u64) -> u32 {
    executions().push((ctx.run_id().to_owned(), ctx.attempt(), "start"));
    std::thread::sleep(Duration::from_millis(millis));
    executions().push((ctx.run_id().to_owned(), ctx.attempt(), "done"));
    n
}

/// How many of `ids` recorded `what` (`"start"` or `"done"`).
fn recorded(ids: &[RunId], what: &str) -> usize {
    let ids: Vec<String> = ids.iter().map(RunId::to_string).collect();
    executions().iter().filter(|(id, _, w)| *w == what && ids.contains(id)).count()
}

/// The attempts that started and that finished executing, for one run.
fn attempts_of(id: RunId) -> (Vec<u32>, Vec<u32>) {
    let id = id.to_string();
    let log = executions();
    let of = |what: &str| log.iter().filter(|(i, _, w)| *i == id && *w == what).map(|(_, a, _)| *a).collect();
    (of("start"), of("done"))
}

fn config() -> EngineConfig {
    let mut config = EngineConfig::default();
    config.max_concurrency = 4;
    config.poll_interval = Duration::from_millis(50);
    config.lease = Duration::from_secs(10);
    config.heartbeat_interval = Duration::from_secs(1);
    config.rescue_interval = Duration::from_millis(100);
    config
}

async fn submit(client: &Client, n: u32, millis: u64) -> Run {
    let mut options = SubmitOptions::default();
    options.retries = Some(3);
    client.submit_with("faults.slow_effect", json!({"n": n, "millis": millis}), options).await.unwrap()
}

/// Polls `done` every 10 ms until it holds, at most [`WAIT`].
async fn until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "gave up waiting: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Every run of `runs` completes with its own result, the store holds
/// exactly these runs, and no attempt executed twice: a run executed again
/// only under a higher attempt. Returns how many runs executed more than once.
async fn assert_each_completed_once(client: &Client, runs: &[Run]) -> usize {
    let mut again = 0;
    for run in runs {
        let done = client.wait(run.id, WAIT).await.unwrap();
        assert_eq!(done.status, RunStatus::Completed, "{done:?}");
        assert_eq!(done.result, Some(run.payload["n"].clone()), "{done:?}");
        let (starts, dones) = attempts_of(run.id);
        let mut distinct = starts.clone();
        distinct.dedup();
        assert!(starts.is_sorted() && distinct == starts, "run {}: an attempt executed twice: {starts:?}", run.id);
        assert!(starts.iter().all(|attempt| *attempt <= done.attempt), "run {}: {starts:?} vs {done:?}", run.id);
        assert!(dones.contains(&done.attempt), "run {}: the completed attempt executed to its end: {dones:?}", run.id);
        assert!(done.attempt <= done.max_attempts, "{done:?}");
        if starts.len() > 1 {
            again += 1;
        }
    }
    let mut filter = RunFilter::default();
    filter.limit = Some(1000);
    let listed = client.list(filter).await.unwrap();
    let mut listed: Vec<RunId> = listed.items.iter().map(|run| run.id).collect();
    listed.sort();
    let mut submitted: Vec<RunId> = runs.iter().map(|run| run.id).collect();
    submitted.sort();
    assert_eq!(listed, submitted, "no run was lost or made twice");
    again
}

// ---------------------------------------------------------------------------
// PostgreSQL: a database whose connections the test can cut

/// A fresh database on the test server, and an admin's way to it (`psql`).
struct Database {
    /// The server's URL (its `postgres` database), for the admin.
    server: String,
    /// The fresh database's URL.
    url: String,
    /// Its name, `tf_test_<UUIDv7>`.
    name: String,
}

impl Database {
    /// A new database, or `None` after printing `SKIPPED` without a server.
    async fn fresh() -> Option<Database> {
        let server = crate::support::backends::postgres_server()?;
        let url = PostgresStore::create_test_database(&server).await.expect("a fresh test database");
        let name = url.rsplit('/').next().unwrap().split('?').next().unwrap().to_owned();
        assert!(name.starts_with("tf_test_") && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
        Some(Database { server, url, name })
    }

    /// Runs `sql` on the server's `postgres` database as the test role
    /// (which owns the test database); its output, unaligned.
    async fn admin(&self, sql: String) -> String {
        let server = self.server.clone();
        tokio::task::spawn_blocking(move || psql(&server, &sql)).await.unwrap()
    }

    /// Ends every connection to the database but the admin's own, waiting
    /// until each is gone; how many there were.
    async fn terminate_connections(&self) -> usize {
        let ended = self
            .admin(format!(
                "SELECT count(*) FILTER (WHERE ended) FROM (SELECT pg_terminate_backend(pid, 10000) AS ended \
                 FROM pg_stat_activity WHERE datname = '{}' AND pid <> pg_backend_pid()) AS t",
                self.name
            ))
            .await;
        ended.trim().parse().unwrap()
    }

    /// Makes the database refuse new connections and ends the open ones,
    /// until the guard's [`Outage::end`] (or its drop).
    async fn outage(&self) -> Outage {
        self.admin(format!("ALTER DATABASE {} ALLOW_CONNECTIONS false", self.name)).await;
        let outage = Outage { server: self.server.clone(), name: self.name.clone(), ended: false };
        self.terminate_connections().await;
        outage
    }

    async fn drop_database(self) {
        let _ = PostgresStore::drop_test_database(&self.server, &self.url).await;
    }
}

/// A database refusing connections; it accepts them again when this ends.
struct Outage {
    server: String,
    name: String,
    ended: bool,
}

impl Outage {
    fn sql(&self) -> String {
        format!("ALTER DATABASE {} ALLOW_CONNECTIONS true", self.name)
    }

    async fn end(mut self) {
        let (server, sql) = (self.server.clone(), self.sql());
        tokio::task::spawn_blocking(move || psql(&server, &sql)).await.unwrap();
        self.ended = true;
    }
}

impl Drop for Outage {
    fn drop(&mut self) {
        // A failing test must not leave the database closed.
        if !self.ended {
            let _ = std::panic::catch_unwind(|| psql(&self.server, &self.sql()));
        }
    }
}

/// `psql` on `url` with `sql`; its standard output. `psql` comes with the
/// server `scripts/postgres` installs.
fn psql(url: &str, sql: &str) -> String {
    let output = Command::new("psql")
        .args(["--no-psqlrc", "--quiet", "--tuples-only", "--no-align", "--set=ON_ERROR_STOP=1"])
        .args(["--dbname", url, "--command", sql])
        .env("PGCONNECT_TIMEOUT", "10")
        .stdin(Stdio::null())
        .output()
        .expect("psql runs (it comes with the PostgreSQL server that scripts/postgres installs)");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "psql failed on `{sql}`: {stderr}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

async fn engine_on(db: &Database) -> (Engine, Client) {
    let store = PostgresStore::connect(&db.url).await.expect("the test database opens");
    let engine = Engine::start(Arc::new(store), config()).unwrap();
    (engine.clone(), Client::new(engine))
}

/// Every connection of the engine is ended twice: while its first runs
/// execute, and again as they report. Nothing is lost, no attempt executes
/// twice, and submits after the drop work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_connections_ended_mid_run_lose_no_run() {
    let Some(db) = Database::fresh().await else { return };
    let (engine, client) = engine_on(&db).await;
    let mut runs = Vec::new();
    for n in 0..8 {
        runs.push(submit(&client, n, 1500).await);
    }
    let ids: Vec<RunId> = runs.iter().map(|run| run.id).collect();

    until("a run starts", || recorded(&ids, "start") > 0).await;
    let ended = db.terminate_connections().await;
    assert!(ended >= 1, "at least the engine's listening connection was open");
    until("a run finishes", || recorded(&ids, "done") > 0).await;
    db.terminate_connections().await;

    // The pool replaces its dead connections: submits work at once.
    for n in 8..10 {
        runs.push(submit(&client, n, 100).await);
    }
    let again = assert_each_completed_once(&client, &runs).await;
    println!("{again} of {} runs executed again under a new attempt", runs.len());
    engine.shutdown(Duration::ZERO).await;
    db.drop_database().await;
}

/// The database refuses connections (and its open ones end) from while the
/// first runs execute until after they finished: their reports fail for a
/// while. Once it is back, every run completes and new submits work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_an_outage_as_runs_finish_loses_no_outcome() {
    let Some(db) = Database::fresh().await else { return };
    let (engine, client) = engine_on(&db).await;
    let mut runs = Vec::new();
    for n in 0..6 {
        runs.push(submit(&client, n, 1000).await);
    }
    let ids: Vec<RunId> = runs.iter().map(|run| run.id).collect();

    until("a run starts", || recorded(&ids, "start") > 0).await;
    let outage = db.outage().await;
    until("a run finishes during the outage", || recorded(&ids, "done") > 0).await;
    // Its report has failed meanwhile (no connection can be had).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let error = client.submit("faults.slow_effect", json!({"n": 99, "millis": 0})).await.unwrap_err();
    assert!(error.to_string().contains("not currently accepting connections"), "{error}");
    outage.end().await;

    for n in 6..8 {
        runs.push(submit(&client, n, 100).await);
    }
    let again = assert_each_completed_once(&client, &runs).await;
    println!("{again} of {} runs executed again under a new attempt", runs.len());
    engine.shutdown(Duration::ZERO).await;
    db.drop_database().await;
}

// ---------------------------------------------------------------------------
// A store that fails reports on purpose

/// A store whose next `finish`es fail: `before` of them without writing
/// (the connection dropped before the commit), `after` of them after writing
/// (the acknowledgement was lost).
struct FlakyReports {
    before: AtomicUsize,
    after: AtomicUsize,
    failed: AtomicUsize,
}

/// Takes one from `counter` if it is above zero.
fn take_one(counter: &AtomicUsize) -> bool {
    counter.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok()
}

impl Hooks for FlakyReports {
    fn finish(&self, inner: &Arc<dyn Store>, report: Report) -> BoxFuture<store::Result<Run>> {
        let lost = || {
            let reset = store::DatabaseError::new(store::DatabaseErrorKind::Unavailable, "connection reset (injected)");
            store::Error::from(reset)
        };
        if take_one(&self.before) {
            self.failed.fetch_add(1, Ordering::SeqCst);
            return Box::pin(async move { Err(lost()) });
        }
        let write = inner.finish(report);
        if take_one(&self.after) {
            self.failed.fetch_add(1, Ordering::SeqCst);
            return Box::pin(async move { write.await.and_then(|_| Err(lost())) });
        }
        write
    }
}

/// A report that fails is tried again, so the run completes on its first
/// attempt and executes once — whether the failed write stored nothing or
/// stored the outcome and lost only the answer. (The lease is far longer
/// than the retries take, so the rescuer never steps in.)
async fn a_failed_report_is_retried_not_re_executed(inner: Arc<dyn Store>) {
    let hooks = FlakyReports { before: AtomicUsize::new(0), after: AtomicUsize::new(0), failed: AtomicUsize::new(0) };
    let store = Arc::new(Hooked { inner, hooks });
    let mut config = config();
    config.lease = Duration::from_secs(60);
    config.heartbeat_interval = Duration::from_secs(5);
    let engine = Engine::start(store.clone(), config).unwrap();
    let client = Client::new(engine.clone());

    for (n, (before, after)) in [(2, 0), (0, 1), (1, 1)].into_iter().enumerate() {
        store.hooks.before.store(before, Ordering::SeqCst);
        store.hooks.after.store(after, Ordering::SeqCst);
        let failed = store.hooks.failed.load(Ordering::SeqCst);
        let run = submit(&client, n as u32, 0).await;
        let done = client.wait(run.id, WAIT).await.unwrap();
        assert_eq!(
            store.hooks.failed.load(Ordering::SeqCst) - failed,
            before + after,
            "the reports failed as arranged"
        );
        assert_eq!((done.status, done.attempt), (RunStatus::Completed, 1), "{before} + {after}: {done:?}");
        assert_eq!(done.result, Some(json!(n)));
        assert_eq!(attempts_of(run.id), (vec![1], vec![1]), "executed once");
    }
    let mut statuses = HashMap::new();
    for run in client.list(RunFilter::default()).await.unwrap().items {
        *statuses.entry(run.status).or_insert(0) += 1;
    }
    assert_eq!(statuses, HashMap::from([(RunStatus::Completed, 3)]), "one run per submit");
    engine.shutdown(Duration::ZERO).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_failed_report_is_retried_not_re_executed() {
    let dir = tempfile::tempdir().unwrap();
    a_failed_report_is_retried_not_re_executed(Arc::new(SqliteStore::open_in(dir.path()).unwrap())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_failed_report_is_retried_not_re_executed() {
    let Some(db) = Database::fresh().await else { return };
    let store = PostgresStore::connect(&db.url).await.expect("the test database opens");
    a_failed_report_is_retried_not_re_executed(Arc::new(store)).await;
    db.drop_database().await;
}

// ---------------------------------------------------------------------------
// The app, started against a database it cannot reach

/// Runs the example app with `args` (no store settings from the
/// environment), killing it after [`WAIT`]; exit code, stdout, stderr and
/// how long it took.
fn app(args: &[&str]) -> (Option<i32>, String, String, Duration) {
    app_with_url(args, None)
}

/// [`app`] with `TASKFLOW_DATABASE_URL` set to `database_url`.
fn app_with_url(args: &[&str], database_url: Option<&str>) -> (Option<i32>, String, String, Duration) {
    let started = Instant::now();
    let mut command = Command::new(env!("CARGO_BIN_EXE_simple_tasks"));
    match database_url {
        Some(url) => command.env("TASKFLOW_DATABASE_URL", url),
        None => command.env_remove("TASKFLOW_DATABASE_URL"),
    };
    let mut child = command
        .args(args)
        .env_remove("TASKFLOW_DATA_DIR")
        .env_remove("TASKFLOW_ADDR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the example binary runs");
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if started.elapsed() > WAIT {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let took = started.elapsed();
    let output = child.wait_with_output().unwrap();
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (output.status.code(), text(&output.stdout), text(&output.stderr), took)
}

const UNREACHABLE: &str = "postgres://taskflow:s3cret@127.0.0.1:1/nowhere";
const SOME_RUN: &str = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";

/// Nothing listens on port 1: `status` and `serve` (also as the default
/// command) stop at once with an error naming the database without its
/// password, whether the URL comes as a flag or from the environment.
#[test]
fn an_unreachable_database_stops_the_app_with_the_url_but_not_the_password() {
    let flag = ["--database-url", UNREACHABLE];
    let cases = [
        (&flag[..], &["status", SOME_RUN][..]),
        (&flag, &["serve"]),
        (&flag, &[]),
        (&[], &["status", SOME_RUN]),
        (&[], &["serve"]),
    ];
    for (store, command) in cases {
        let args = [store, command].concat();
        let from_env = store.is_empty().then_some(UNREACHABLE);
        let (code, stdout, stderr, took) = app_with_url(&args, from_env);
        assert!(code.is_some_and(|code| code != 0), "{args:?} fails: {code:?} {stderr}");
        // Refused at once; the pool would have retried for 30 s.
        assert!(took < Duration::from_secs(20), "{args:?} took {took:?}");
        assert!(
            stderr.contains("cannot connect to PostgreSQL at postgres://taskflow:***@127.0.0.1:1/nowhere"),
            "{stderr}"
        );
        assert!(stderr.contains("check that the server is running"), "{stderr}");
        assert!(stdout.is_empty(), "nothing is printed as if it worked: {stdout}");
        assert!(!stdout.contains("s3cret") && !stderr.contains("s3cret"), "{stdout}{stderr}");
    }
}

/// URLs that are no PostgreSQL URLs are refused before anything connects,
/// saying what is expected, and never echo the password.
#[test]
fn a_malformed_database_url_is_refused_clearly() {
    let expected = "expected postgres://user:password@host:port/database";
    let cases = [
        ("mysql://taskflow:s3cret@127.0.0.1:3306/runs", "the URL is not a PostgreSQL URL"),
        ("taskflow:s3cret@127.0.0.1:5432/runs", "the URL is not a PostgreSQL URL"),
        ("127.0.0.1:5432", "the URL is not a PostgreSQL URL"),
        ("postgres://taskflow:s3cret@127.0.0.1:port/runs", "the URL is invalid"),
    ];
    for (url, problem) in cases {
        for command in [&["status", SOME_RUN][..], &["serve"]] {
            let mut args = vec!["--database-url", url];
            args.extend(command);
            let (code, stdout, stderr, _) = app(&args);
            assert!(code.is_some_and(|code| code != 0), "{args:?} fails: {code:?} {stderr}");
            assert!(stderr.contains(problem) && stderr.contains(expected), "{url}: {stderr}");
            assert!(stdout.is_empty(), "{stdout}");
            assert!(!stdout.contains("s3cret") && !stderr.contains("s3cret"), "{url}: {stderr}");
        }
    }
}
