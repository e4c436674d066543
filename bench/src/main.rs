//! TaskFlow's benchmark harness: `taskflow-bench all [--quick] [--smoke]`
//! runs every workload several times, with peers side by side, and writes
//! `BENCHMARKS.md` and `bench/results.json`; `taskflow-bench app …` is this
//! binary as a TaskFlow app (the `serve` the HTTP workloads talk to).

mod ceiling;
mod executors;
mod http;
mod inproc;
mod memory;
mod peers;
mod report;
mod server;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use taskflow::store::{SqliteStore, Store};

use report::{Figure, Machine, Peer, Row, Target};

/// Add two numbers (the no-op run of every workload)
#[taskflow::task]
fn add_numbers(a: i64, b: i64) -> i64 {
    inproc::EXECUTED.fetch_add(1, Ordering::Relaxed);
    a.wrapping_add(b)
}

/// Add two numbers, as an `async` task (no blocking-pool hop)
#[taskflow::task]
async fn add_numbers_async(a: i64, b: i64) -> i64 {
    inproc::EXECUTED.fetch_add(1, Ordering::Relaxed);
    a.wrapping_add(b)
}

/// Runs a transaction of B1's ceiling.
const CEILING_BATCH: usize = 1000;

/// A number no other repetition of this process uses, to tell runs apart.
fn unique_tag() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    (nanos % 1_000_000_000_000) * 100 + NEXT.fetch_add(1, Ordering::Relaxed) % 100
}

/// What to run and how much.
#[derive(Debug, Clone)]
struct Plan {
    mode: &'static str,
    repeat: usize,
    b1_runs: usize,
    b1_pg_runs: usize,
    b1_inflight: usize,
    b1_concurrency: usize,
    dramatiq_runs: usize,
    celery_runs: usize,
    apalis_runs: usize,
    latency_secs: f64,
    latency_repeat: usize,
    b3_secs: f64,
    b4_runs: usize,
    b5_pending: usize,
    peers: bool,
    postgres: bool,
    only: Option<Vec<String>>,
    out: PathBuf,
}

impl Plan {
    fn wants(&self, workload: &str) -> bool {
        self.only.as_ref().is_none_or(|only| only.iter().any(|w| w.eq_ignore_ascii_case(workload)))
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

const USAGE: &str = "usage: taskflow-bench all [--quick] [--smoke] [--repeat N] [--only B1,B2,B3,B4,B5] [--no-peers] [--no-postgres] \
                     [--b1-runs N] [--concurrency N] [--out DIR]\n       taskflow-bench app <serve|token|…>";

fn parse(args: &[String]) -> Result<Plan> {
    let quick = args.iter().any(|a| a == "--quick");
    let smoke = args.iter().any(|a| a == "--smoke");
    let mut plan = if smoke {
        Plan {
            mode: "smoke",
            repeat: 1,
            b1_runs: 300,
            b1_pg_runs: 300,
            b1_inflight: 64,
            b1_concurrency: 256,
            dramatiq_runs: 0,
            celery_runs: 0,
            apalis_runs: 0,
            latency_secs: 0.5,
            latency_repeat: 1,
            b3_secs: 0.5,
            b4_runs: 3,
            b5_pending: 500,
            peers: false,
            postgres: true,
            only: None,
            out: std::env::temp_dir().join("taskflow-bench-smoke"),
        }
    } else if quick {
        Plan {
            mode: "quick",
            repeat: 3,
            b1_runs: 10_000,
            b1_pg_runs: 3_000,
            b1_inflight: 1024,
            b1_concurrency: 1024,
            dramatiq_runs: 1_000,
            celery_runs: 500,
            apalis_runs: 2_000,
            latency_secs: 3.0,
            latency_repeat: 1,
            b3_secs: 3.0,
            b4_runs: 20,
            b5_pending: 50_000,
            peers: true,
            postgres: true,
            only: None,
            out: repo_root(),
        }
    } else {
        Plan {
            mode: "full",
            repeat: 3,
            b1_runs: 200_000,
            // ~600 runs/s here: 200,000 would take six minutes a repetition.
            b1_pg_runs: 20_000,
            b1_inflight: 1024,
            b1_concurrency: 1024,
            dramatiq_runs: 20_000,
            celery_runs: 10_000,
            apalis_runs: 10_000,
            latency_secs: 10.0,
            latency_repeat: 3,
            b3_secs: 20.0,
            b4_runs: 100,
            b5_pending: 1_000_000,
            peers: true,
            postgres: true,
            only: None,
            out: repo_root(),
        }
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || it.next().with_context(|| format!("{arg} needs a value\n{USAGE}"));
        match arg.as_str() {
            "--quick" | "--smoke" => {}
            "--no-peers" => plan.peers = false,
            "--no-postgres" => plan.postgres = false,
            "--repeat" => plan.repeat = value()?.parse()?,
            "--b1-runs" => {
                plan.b1_runs = value()?.parse()?;
                plan.b1_pg_runs = plan.b1_runs;
            }
            "--concurrency" => plan.b1_concurrency = value()?.parse()?,
            "--inflight" => plan.b1_inflight = value()?.parse()?,
            "--only" => plan.only = Some(value()?.split(',').map(str::to_owned).collect()),
            "--out" => plan.out = PathBuf::from(value()?),
            other => bail!("unknown argument `{other}`\n{USAGE}"),
        }
    }
    Ok(plan)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("app") => {
            let app_args = std::iter::once("taskflow-bench".to_owned()).chain(args[2..].iter().cloned());
            taskflow::App::from_args(app_args).run()?;
            Ok(())
        }
        // The process and Docker executors run this binary as a worker.
        Some("__run") => {
            taskflow::App::from_args(args.iter().cloned()).run()?;
            Ok(())
        }
        Some("all") => {
            let plan = parse(&args[2..])?;
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            runtime.block_on(all(plan))
        }
        _ => bail!("{USAGE}"),
    }
}

/// A fresh data directory on the real disk (not a tmpfs), removed on drop.
fn data_dir(root: &Path) -> Result<tempfile::TempDir> {
    std::fs::create_dir_all(root)?;
    Ok(tempfile::Builder::new().prefix("run-").tempdir_in(root)?)
}

fn bench_data_root() -> PathBuf {
    let home = std::env::var_os("HOME").map_or_else(std::env::temp_dir, PathBuf::from);
    home.join(".cache/taskflow/bench-data")
}

/// Repeats an async measurement, printing each; an error ends the row.
async fn repeat<F, Fut>(times: usize, label: &str, mut once: F) -> Result<Figure, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<f64>>,
{
    let mut samples = Vec::new();
    for i in 0..times {
        eprintln!("  {label}: repetition {}/{times}", i + 1);
        match once().await {
            Ok(value) => samples.push(value),
            Err(error) => {
                eprintln!("  {label}: failed: {error:#}");
                return Err(format!("failed: {error:#}"));
            }
        }
    }
    Ok(Figure::new(samples))
}

/// Several figures measured together in each repetition.
async fn repeat_many<F, Fut>(times: usize, label: &str, count: usize, mut once: F) -> Vec<Result<Figure, String>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Vec<f64>>>,
{
    let mut samples = vec![Vec::new(); count];
    for i in 0..times {
        eprintln!("  {label}: repetition {}/{times}", i + 1);
        match once().await {
            Ok(values) => {
                for (k, v) in values.into_iter().enumerate() {
                    samples[k].push(v);
                }
            }
            Err(error) => {
                eprintln!("  {label}: failed: {error:#}");
                return vec![Err(format!("failed: {error:#}")); count];
            }
        }
    }
    samples.into_iter().map(|s| Ok(Figure::new(s))).collect()
}

/// Notes for the report, gathered as the workloads run.
#[derive(Debug, Default)]
struct Notes {
    lines: Vec<String>,
}

async fn all(plan: Plan) -> Result<()> {
    let root = repo_root();
    let mut machine = Machine::describe(&root);
    eprintln!("taskflow-bench: {} mode; load average {}", plan.mode, machine.load_start);
    let data_root = bench_data_root();
    let mut rows = Vec::new();
    let mut notes = Notes::default();
    notes.lines.push(format!("fsync on the data disk ({}): {}", data_root.display(), fsync_probe(&data_root)));
    notes.lines.push(format!(
        "B1: `Client::submit` (default options: validation, de-duplication) from {} concurrent submitters in the \
         process of the embedded `Engine` (max_concurrency {}, retention off), SQLite in WAL mode with \
         `synchronous=FULL` on the data disk (every submit is acknowledged after its group commit's fsync); \
         runs/s from the first submit until the store holds every run `completed`; CPU per run from \
         `/proc/self/stat` (process) and the writer thread's `schedstat`. A fresh store each repetition.",
        plan.b1_inflight, plan.b1_concurrency
    ));
    notes.lines.push(
        "B2: a dedicated thread spawns each submit at its scheduled time (open loop); latency from the scheduled \
         time, HDR histograms in µs. In process: `Client::subscribe()` events (`running`, `completed`), engine \
         max_concurrency 32. Over REST: `POST /api/v1/tasks` to `taskflow-bench app serve` (default engine) with a \
         bearer token from `app token`, through a pooled hyper client; start and completion from the stored \
         `started_at` / `finished_at` (milliseconds, taken at mid-millisecond, so ± 0.5 ms). `started_at` is \
         the time the claim was issued, before it committed (for a run its submit claimed, the submit's time), \
         so REST submit→start counts from the later of `started_at` and the 202; in process it is the \
         `running` event, after the claim's commit."
            .to_owned(),
    );
    notes.lines.push(
        "B3: 64 closed-loop connections (hyper, HTTP/1.1 keep-alive) in this process against `app serve`, which \
         executes the runs it accepts meanwhile; a 202 counts as a durable accept. `POST /api/v1/echo` with the \
         same body (token check, body limit, JSON parsed and written; nothing stored) is the HTTP stack's ceiling, \
         and `/health` (one primary-key lookup) another; both are measured on the empty store first, and \
         `/health` again over the runs the intake stored."
            .to_owned(),
    );
    notes.lines.push(format!(
        "B5: `VmRSS` of `app serve` 2 s after start on an empty store, and on a store holding {} pending runs \
         (stored beforehand through `Client::for_store`, due a day later so nothing claims them), after one \
         `GET /api/v1/tasks`.",
        report::num(plan.b5_pending as f64)
    ));

    let python_peers = if plan.peers && (plan.wants("B1") || plan.wants("B2")) {
        python_peers(&mut notes).await
    } else {
        Err("not run (--no-peers)".to_owned())
    };
    if plan.wants("B1") {
        b1(&plan, &data_root, &mut rows, &mut notes, &python_peers).await;
    }
    if plan.wants("B2") {
        b2(&plan, &data_root, &mut rows, &python_peers).await;
    }
    drop(python_peers);
    if plan.wants("B3") {
        b3(&plan, &data_root, &mut rows).await;
    }
    if plan.wants("B4") {
        b4(&plan, &mut rows).await;
    }
    if plan.wants("B5") {
        b5(&plan, &data_root, &mut rows).await;
    }

    machine.load_end = report::load_average();
    write_report(&plan, &machine, &rows, &notes)?;
    // The smoke checks that the harness works: a measurement of ours that
    // could not be taken fails it (peers may be missing on a machine).
    let failed: Vec<&str> = rows.iter().filter(|row| row.ours.is_err()).map(|row| row.key.as_str()).collect();
    if plan.mode == "smoke" && !failed.is_empty() {
        bail!("the smoke could not measure {}", failed.join(", "));
    }
    Ok(())
}

async fn b1(plan: &Plan, data_root: &Path, rows: &mut Vec<Row>, notes: &mut Notes, python_peers: &PythonPeers) {
    eprintln!("B1 throughput, SQLite: {} runs × {}", plan.b1_runs, plan.repeat);
    let mut figures = repeat_many(plan.repeat, "B1 sqlite", 3, || async {
        let dir = data_dir(data_root)?;
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in(dir.path())?);
        let t = inproc::throughput(store, "add_numbers", plan.b1_runs, plan.b1_inflight, plan.b1_concurrency).await?;
        Ok(vec![t.per_s, t.cpu_us, t.writer_us])
    })
    .await
    .into_iter();
    let mut next = || figures.next().unwrap_or_else(|| Err("missing".to_owned()));
    let ours = next();
    let cpu = next();
    let writer = next();
    let mut row = Row::new(
        "B1_sqlite_runs_per_s",
        format!("B1 SQLite, {} runs, in-process", report::num(plan.b1_runs as f64)),
        "runs/s",
        ours,
    )
    .target(Target::AtLeast(50_000.0));
    if plan.peers {
        row.peers = b1_peers(plan, python_peers).await;
    }
    rows.push(row);
    rows.push(Row::new("B1_sqlite_cpu_us_per_run", "B1 SQLite: CPU time of the process per run", "µs", cpu));
    rows.push(Row::new(
        "B1_sqlite_writer_cpu_us_per_run",
        "B1 SQLite: CPU time of the writer thread per run",
        "µs",
        writer,
    ));

    eprintln!("B1 ceiling: SQLite alone, {} runs × {}", plan.b1_runs, plan.repeat);
    for (indexes, key, label) in [
        (true, "B1_sqlite_ceiling_runs_per_s", "B1 ceiling: SQLite alone, a run's statements, same schema"),
        (
            false,
            "B1_sqlite_ceiling_no_indexes_runs_per_s",
            "B1 ceiling: SQLite alone, without the secondary indexes (nor the lookup)",
        ),
    ] {
        let figure = repeat(plan.repeat, key, || async {
            let dir = data_dir(data_root)?;
            let n = plan.b1_runs;
            let per_s = tokio::task::spawn_blocking(move || ceiling::runs_per_s(dir.path(), n, CEILING_BATCH, indexes))
                .await??;
            eprintln!("    {n} runs -> {per_s:.0} runs/s");
            Ok(per_s)
        })
        .await;
        rows.push(Row::new(key, label, "runs/s", figure));
    }
    notes.lines.push(format!(
        "B1 ceiling: the statements the SQLite store runs for one run (the de-duplication lookup and the insert of \
         its submit, the update of its claim, the read and the update of its finish), {CEILING_BATCH} runs a \
         transaction, on one thread through rusqlite, on the store's schema in WAL mode with `synchronous=FULL`; \
         no engine, no channels, no JSON. Again without the five secondary indexes (and so without the \
         de-duplication lookup, which would scan the table), for their share."
    ));

    eprintln!("B1 throughput, SQLite, an async task: {} runs × {}", plan.b1_runs, plan.repeat);
    let mut figures = repeat_many(plan.repeat, "B1 sqlite async", 2, || async {
        let dir = data_dir(data_root)?;
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in(dir.path())?);
        let t =
            inproc::throughput(store, "add_numbers_async", plan.b1_runs, plan.b1_inflight, plan.b1_concurrency).await?;
        Ok(vec![t.per_s, t.cpu_us])
    })
    .await
    .into_iter();
    let mut next = || figures.next().unwrap_or_else(|| Err("missing".to_owned()));
    let label = format!("B1 SQLite, {} runs, in-process, `async fn` task", report::num(plan.b1_runs as f64));
    rows.push(Row::new("B1_sqlite_async_runs_per_s", label, "runs/s", next()).target(Target::AtLeast(50_000.0)));
    rows.push(Row::new(
        "B1_sqlite_async_cpu_us_per_run",
        "B1 SQLite, `async fn` task: CPU time of the process per run",
        "µs",
        next(),
    ));

    eprintln!("B1 throughput, PostgreSQL: {} runs × {}", plan.b1_pg_runs, plan.repeat);
    let url = if plan.postgres { postgres_url(plan).await } else { Ok(None) };
    let ours = match &url {
        Ok(Some(url)) => {
            if let Ok(settings) = pg::settings(url).await {
                notes.lines.push(format!("PostgreSQL: {settings}"));
            }
            repeat(plan.repeat, "B1 postgres", || async {
                let db = pg::FreshDatabase::create(url).await?;
                let store = taskflow::store::PostgresStore::connect(&db.url).await?;
                let store: Arc<dyn Store> = Arc::new(store);
                let result =
                    inproc::throughput(store, "add_numbers", plan.b1_pg_runs, plan.b1_inflight, plan.b1_concurrency)
                        .await;
                db.drop_it().await;
                Ok(result?.per_s)
            })
            .await
        }
        Ok(None) => Err("skipped: no PostgreSQL (set TASKFLOW_TEST_DATABASE_URL)".to_owned()),
        Err(error) => Err(format!("no PostgreSQL: {error:#}")),
    };
    let mut row = Row::new(
        "B1_postgres_runs_per_s",
        format!("B1 PostgreSQL, {} runs, in-process", report::num(plan.b1_pg_runs as f64)),
        "runs/s",
        ours,
    )
    .target(Target::AtLeast(10_000.0));
    if plan.peers
        && let Ok(Some(url)) = &url
    {
        row.peers = b1_pg_peers(plan, url).await;
    }
    rows.push(row);
}

/// graphile_worker and apalis-postgres on B1 PostgreSQL, each repetition in a
/// fresh database of the server at `url`.
async fn b1_pg_peers(plan: &Plan, url: &str) -> Vec<Peer> {
    let n = plan.b1_pg_runs;
    let (concurrency, pushers) = peers::PG_PEER_SETTINGS;
    let peers = [
        (
            "graphile_worker",
            "graphile",
            format!(
                "graphile_worker 0.14.1 (sqlx 0.9), one worker with concurrency {concurrency}, {pushers} concurrent \
                 pushers (`add_job`), sqlx pool of 16, LISTEN/NOTIFY delivery with a 10 ms poll interval (default \
                 1 s), a local queue of {concurrency} jobs fetched in batches and completions batched over 2 ms \
                 (both off by default); a job counts when its handler ran; {n} runs a repetition"
            ),
        ),
        (
            "apalis-postgres",
            "apalis",
            format!(
                "apalis 1.0.0 + apalis-postgres 1.0.0 (sqlx 0.9), one worker with a concurrency limit of \
                 {concurrency} (tasks run by the worker itself), {pushers} concurrent pushers, sqlx pool of 16, \
                 fetch batch size {concurrency} (default 10), LISTEN/NOTIFY (`with_pubsub`) plus a 10 ms poll \
                 interval; a job counts when its handler ran; {n} runs a repetition"
            ),
        ),
    ];
    let built = peers::build_pg_peers().await;
    let mut out = Vec::new();
    for (name, peer, config) in peers {
        eprintln!("B1 PostgreSQL peer {name}: {n} runs × {}", plan.repeat);
        let result = match &built {
            Ok(binary) => {
                repeat(plan.repeat, name, || async {
                    let db = pg::FreshDatabase::create(url).await?;
                    let r = peers::pg_peer_b1(binary, peer, &db.url, n).await;
                    db.drop_it().await;
                    r
                })
                .await
            }
            Err(error) => Err(format!("not built: {error:#}")),
        };
        // "Ahead of every Rust peer".
        out.push(Peer { name: name.to_owned(), result, min_ratio: Some(1.0), config });
    }
    out
}

async fn b4(plan: &Plan, rows: &mut Vec<Row>) {
    let n = plan.b4_runs;
    eprintln!("B4 executors, process: {n} runs × {}", plan.repeat);
    let mut process = repeat_many(plan.repeat, "B4 process", 3, || async {
        let pair = executors::process(n).await?;
        Ok(vec![pair.ours_ms, pair.bare_ms, pair.ours_ms - pair.bare_ms])
    })
    .await
    .into_iter();
    let mut next = || process.next().unwrap_or_else(|| Err("missing".to_owned()));
    let (ours, bare, overhead) = (next(), next(), next());
    let mut row =
        Row::new("B4_process_ms_per_run", "B4 process executor: one `add_numbers` run", "ms", ours).lower_is_better();
    row.peers.push(Peer {
        name: "bare spawn".to_owned(),
        result: bare,
        min_ratio: None,
        config: format!(
            "the same binary spawned by hand as `__run add_numbers`, payload on stdin; {n} runs a repetition"
        ),
    });
    rows.push(row);
    rows.push(
        Row::new("B4_process_overhead_ms", "B4 process executor: per-run overhead over a bare spawn", "ms", overhead)
            .target(Target::AtMost(2.0)),
    );

    eprintln!("B4 executors, Docker: {n} runs × {}", plan.repeat);
    let (ours, bare, ratio) = match executors::docker_image().await {
        Ok(tag) => {
            let mut docker = repeat_many(plan.repeat, "B4 docker", 3, || async {
                let pair = executors::docker_cold(n, &tag).await?;
                Ok(vec![pair.ours_ms, pair.bare_ms, pair.ours_ms / pair.bare_ms])
            })
            .await
            .into_iter();
            let mut next = || docker.next().unwrap_or_else(|| Err("missing".to_owned()));
            (next(), next(), next())
        }
        Err(error) => {
            let why = Err(format!("no Docker: {error:#}"));
            (why.clone(), why.clone(), why)
        }
    };
    let mut row =
        Row::new("B4_docker_cold_ms_per_run", "B4 Docker executor, cold: one run in a fresh container", "ms", ours)
            .lower_is_better();
    row.peers.push(Peer {
        name: "docker run --rm".to_owned(),
        result: bare,
        min_ratio: None,
        config: format!(
            "`docker run --rm -i` of the same worker image with the executor's limits (network none, read-only, \
             /tmp tmpfs, no capabilities, no-new-privileges, user 65534, memory, CPU, pids); {n} runs a repetition"
        ),
    });
    rows.push(row);
    rows.push(
        Row::new("B4_docker_cold_ratio", "B4 Docker executor, cold ÷ `docker run --rm`", "×", ratio)
            .target(Target::AtMost(1.05)),
    );
    let warm = repeat(plan.repeat, "B4 docker warm", || executors::docker_warm(n)).await;
    rows.push(
        Row::new(
            "B4_docker_warm_ms_per_run",
            "B4 Docker executor, warm pool: one run in a started container",
            "ms",
            warm,
        )
        .target(Target::AtMost(10.0)),
    );
}

/// Redis and the virtualenv of the Python peers (Dramatiq, Celery), set up
/// once for B1 and B2; why not, if they could not be.
type PythonPeers = Result<(peers::Redis, PathBuf), String>;

async fn python_peers(notes: &mut Notes) -> PythonPeers {
    let setup = async {
        let redis = peers::Redis::start().await?;
        let python = peers::venv().await?;
        Ok::<_, anyhow::Error>((redis, python))
    };
    match setup.await {
        Ok((redis, python)) => {
            notes.lines.push(format!("Peers: {}; {}.", peers::versions(&python).await, peers::REDIS_CONFIG));
            Ok((redis, python))
        }
        Err(error) => Err(format!("not set up: {error:#}")),
    }
}

/// The Python peers: name, script, and configuration.
const PYTHON_PEERS: [(&str, &str, &str); 2] = [
    ("dramatiq", "dramatiq_bench.py", "Dramatiq, Redis broker, 2 processes × 8 threads"),
    ("celery", "celery_bench.py", "Celery 5, Redis broker, 2 workers × 8 threads (threads pool), results ignored"),
];

async fn b1_peers(plan: &Plan, python_peers: &PythonPeers) -> Vec<Peer> {
    let mut out = Vec::new();
    match python_peers {
        Ok((redis, python)) => {
            for (name, script, config) in PYTHON_PEERS {
                let (n, ratio) =
                    if name == "dramatiq" { (plan.dramatiq_runs, 20.0) } else { (plan.celery_runs, 100.0) };
                eprintln!("B1 peer {name}: {n} runs × {}", plan.repeat);
                let result = repeat(plan.repeat, name, || peers::python_b1(python, script, redis, n)).await;
                out.push(Peer {
                    name: name.to_owned(),
                    result,
                    min_ratio: Some(ratio),
                    config: format!("{config}; {n} runs a repetition"),
                });
            }
        }
        Err(why) => {
            for (name, ratio) in [("dramatiq", 20.0), ("celery", 100.0)] {
                out.push(Peer {
                    name: name.to_owned(),
                    result: Err(why.clone()),
                    min_ratio: Some(ratio),
                    config: String::new(),
                });
            }
        }
    }
    let n = plan.apalis_runs;
    eprintln!("B1 peer apalis: {n} runs × {}", plan.repeat);
    let result = match peers::build_apalis().await {
        Ok(binary) => {
            repeat(plan.repeat, "apalis", || async {
                let dir = data_dir(&bench_data_root())?;
                peers::apalis_b1(&binary, dir.path(), n).await
            })
            .await
        }
        Err(error) => Err(format!("not built: {error:#}")),
    };
    let (concurrency, pushers, fetch, poll) = peers::APALIS_SETTINGS;
    out.push(Peer {
        name: "apalis".to_owned(),
        result,
        min_ratio: Some(3.0),
        config: format!(
            "apalis 1.0.0 + apalis-sqlite 1.0.0 (sqlx 0.9), SQLite storage (WAL, synchronous=FULL on every connection, pool of 8), \
             one worker with a concurrency limit of {concurrency}, {pushers} concurrent pushers, fetch batch size {fetch} (default 10), \
             a poll every {poll} ms after an empty fetch; a job counts when its handler ran; {n} runs a repetition"
        ),
    });
    out
}

/// The PostgreSQL server: `TASKFLOW_TEST_DATABASE_URL`, else (not in smoke
/// mode) the one `scripts/postgres` starts.
async fn postgres_url(plan: &Plan) -> Result<Option<String>> {
    if let Ok(url) = std::env::var("TASKFLOW_TEST_DATABASE_URL") {
        return Ok(Some(url));
    }
    if plan.mode == "smoke" {
        return Ok(None);
    }
    let script = repo_root().join("scripts/postgres");
    let out = tokio::process::Command::new(&script)
        .stderr(std::process::Stdio::inherit())
        .output()
        .await
        .context("running scripts/postgres")?;
    if !out.status.success() {
        bail!("scripts/postgres failed: {}", out.status);
    }
    Ok(Some(String::from_utf8(out.stdout)?.trim().to_owned()))
}

mod pg {
    //! Fresh PostgreSQL databases for the repetitions.

    use anyhow::{Context as _, Result};
    use sqlx_core::connection::Connection as _;
    use sqlx_core::executor::Executor as _;
    use sqlx_postgres::{PgConnection, Postgres};

    /// The server's durability settings, for the report.
    pub async fn settings(url: &str) -> Result<String> {
        let mut conn = PgConnection::connect(url).await?;
        let mut parts = Vec::new();
        for name in ["server_version", "synchronous_commit", "fsync", "shared_buffers"] {
            let value: String = sqlx_core::query_scalar::query_scalar::<Postgres, String>(&format!("SHOW {name}"))
                .fetch_one(&mut conn)
                .await?;
            parts.push(format!("{name}={value}"));
        }
        Ok(parts.join(", "))
    }

    /// A database created for one repetition.
    #[derive(Debug)]
    pub struct FreshDatabase {
        admin: String,
        name: String,
        /// Its URL.
        pub url: String,
    }

    impl FreshDatabase {
        /// Creates `tf_bench_<tag>` on the server of `admin`.
        pub async fn create(admin: &str) -> Result<FreshDatabase> {
            let name = format!("tf_bench_{}", crate::unique_tag());
            let mut conn = PgConnection::connect(admin).await.context("connecting to PostgreSQL")?;
            conn.execute(format!("CREATE DATABASE {name}").as_str()).await.context("creating a database")?;
            let base = admin.rsplit_once('/').map_or(admin, |(base, _)| base);
            Ok(FreshDatabase { admin: admin.to_owned(), url: format!("{base}/{name}"), name })
        }

        /// Drops it (best effort).
        pub async fn drop_it(self) {
            if let Ok(mut conn) = PgConnection::connect(&self.admin).await {
                let _ = conn.execute(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name).as_str()).await;
            }
        }
    }
}

async fn b2(plan: &Plan, data_root: &Path, rows: &mut Vec<Row>, python_peers: &PythonPeers) {
    for rate in [100.0, 1000.0] {
        let r = rate as u32;
        eprintln!("B2 latency in-process, {r} runs/s for {}s × {}", plan.latency_secs, plan.latency_repeat);
        let figures = repeat_many(plan.latency_repeat, "B2 in-process", 9, || async {
            let dir = data_dir(data_root)?;
            let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in(dir.path())?);
            let l = inproc::latency(store, rate, plan.latency_secs, 32).await?;
            eprintln!(
                "    start p50 {:.3} p99 {:.3} max {:.3} ms; ack p50 {:.3} ms",
                l.start.0, l.start.1, l.start.2, l.ack.0
            );
            Ok(vec![
                l.start.0,
                l.start.1,
                l.start.2,
                l.completed.0,
                l.completed.1,
                l.completed.2,
                l.ack.0,
                l.ack.1,
                l.ack.2,
            ])
        })
        .await;
        let mut f = figures.into_iter();
        let mut next = || f.next().unwrap_or_else(|| Err("missing".to_owned()));
        let p = format!("B2_inproc_{r}");
        let l = format!("B2 in-process {r}/s");
        // The Python peers at the same rate: six figures each, in the order
        // of our first six rows.
        let mut theirs: Vec<_> = Vec::new();
        if plan.peers {
            for (name, script, config) in PYTHON_PEERS {
                let figures = match python_peers {
                    Ok((redis, python)) => {
                        eprintln!("B2 peer {name}, {r} runs/s for {}s × {}", plan.latency_secs, plan.latency_repeat);
                        repeat_many(plan.latency_repeat, name, 6, || {
                            peers::python_b2(python, script, redis, rate, plan.latency_secs)
                        })
                        .await
                    }
                    Err(why) => vec![Err(why.clone()); 6],
                };
                theirs.push((name, config, figures.into_iter()));
            }
        }
        let mut peers_of = |k: usize| -> Vec<Peer> {
            theirs
                .iter_mut()
                .map(|(name, config, figures)| Peer {
                    name: (*name).to_owned(),
                    result: figures.next().unwrap_or_else(|| Err("missing".to_owned())),
                    // "≥ 20× better p99 than Dramatiq" (submit→start).
                    min_ratio: (*name == "dramatiq" && k == 1).then_some(20.0),
                    config: format!(
                        "{config}{}; {} submits a repetition on a fixed schedule, each carrying its scheduled time \
                         (wall clock); start and completion are the task's own clock readings at its body's start \
                         and end (`bench/peers/_latency.py`)",
                        if *name == "dramatiq" {
                            ", idle polling backed off to at most 10 ms (`dramatiq_worker_timeout=10`; the default \
                             1,000 ms costs p99s of hundreds of ms at 100 submits/s)"
                        } else {
                            ""
                        },
                        (rate * plan.latency_secs) as u64
                    ),
                })
                .collect()
        };
        let figures = [
            ("start_p50", "submit→start p50"),
            ("start_p99", "submit→start p99"),
            ("start_max", "submit→start max"),
            ("completed_p50", "submit→completed p50"),
            ("completed_p99", "submit→completed p99"),
            ("completed_max", "submit→completed max"),
        ];
        for (k, (name, what)) in figures.into_iter().enumerate() {
            let key = format!("{p}_{name}_ms");
            let mut row = Row::new(key, format!("{l}: {what}"), "ms", next()).lower_is_better();
            row.peers = peers_of(k);
            row = match k {
                0 => row.target(Target::AtMost(0.5)),
                1 => row.target(Target::AtMost(2.0)),
                _ => row,
            };
            rows.push(row);
        }
        rows.push(Row::new(format!("{p}_ack_p50_ms"), format!("{l}: submit→acknowledged (durable) p50"), "ms", next()));
        rows.push(Row::new(format!("{p}_ack_p99_ms"), format!("{l}: submit→acknowledged p99"), "ms", next()));
        rows.push(Row::new(format!("{p}_ack_max_ms"), format!("{l}: submit→acknowledged max"), "ms", next()));
    }
    for rate in [100.0, 1000.0] {
        let r = rate as u32;
        eprintln!("B2 latency over REST, {r} runs/s for {}s × {}", plan.latency_secs, plan.latency_repeat);
        let figures = repeat_many(plan.latency_repeat, "B2 REST", 9, || async {
            let dir = data_dir(data_root)?;
            let server = server::Server::start(dir.path()).await?;
            let l = http::rest_latency(&server, rate, plan.latency_secs).await;
            server.stop().await?;
            let l = l?;
            eprintln!(
                "    202 p50 {:.3} p99 {:.3} ms; start p50 {:.1} p99 {:.1} ms",
                l.ack.0, l.ack.1, l.start.0, l.start.1
            );
            Ok(vec![
                l.ack.0,
                l.ack.1,
                l.ack.2,
                l.start.0,
                l.start.1,
                l.start.2,
                l.completed.0,
                l.completed.1,
                l.completed.2,
            ])
        })
        .await;
        let mut f = figures.into_iter();
        let mut next = || f.next().unwrap_or_else(|| Err("missing".to_owned()));
        let p = format!("B2_rest_{r}");
        let l = format!("B2 REST {r}/s");
        rows.push(
            Row::new(format!("{p}_ack_p50_ms"), format!("{l}: submit→202 (durable) p50"), "ms", next())
                .target(Target::AtMost(1.0)),
        );
        rows.push(
            Row::new(format!("{p}_ack_p99_ms"), format!("{l}: submit→202 p99"), "ms", next())
                .target(Target::AtMost(5.0)),
        );
        rows.push(Row::new(format!("{p}_ack_max_ms"), format!("{l}: submit→202 max"), "ms", next()));
        rows.push(
            Row::new(format!("{p}_start_p50_ms"), format!("{l}: submit→start p50 (± 0.5 ms)"), "ms", next())
                .target(Target::AtMost(1.0)),
        );
        rows.push(
            Row::new(format!("{p}_start_p99_ms"), format!("{l}: submit→start p99 (± 0.5 ms)"), "ms", next())
                .target(Target::AtMost(5.0)),
        );
        rows.push(Row::new(format!("{p}_start_max_ms"), format!("{l}: submit→start max (± 0.5 ms)"), "ms", next()));
        rows.push(Row::new(
            format!("{p}_completed_p50_ms"),
            format!("{l}: submit→completed p50 (± 0.5 ms)"),
            "ms",
            next(),
        ));
        rows.push(Row::new(
            format!("{p}_completed_p99_ms"),
            format!("{l}: submit→completed p99 (± 0.5 ms)"),
            "ms",
            next(),
        ));
        rows.push(Row::new(
            format!("{p}_completed_max_ms"),
            format!("{l}: submit→completed max (± 0.5 ms)"),
            "ms",
            next(),
        ));
    }
}

async fn b3(plan: &Plan, data_root: &Path, rows: &mut Vec<Row>) {
    eprintln!("B3 HTTP intake, 64 connections for {}s × {}", plan.b3_secs, plan.latency_repeat);
    let figures = repeat_many(plan.latency_repeat, "B3", 14, || async {
        let dir = data_dir(data_root)?;
        let server = server::Server::start(dir.path()).await?;
        let result = async {
            let health_secs = (plan.b3_secs / 4.0).max(0.5);
            // The ceilings on the empty store (the echo route, /health),
            // then the intake, then /health again over the runs the intake
            // stored.
            let echo = http::intake(&server.endpoint, 64, health_secs, http::Route::Echo).await?;
            let health = http::intake(&server.endpoint, 64, health_secs, http::Route::Health).await?;
            let (server_cpu, client_cpu) = (server.cpu_seconds(), server::cpu_seconds("self"));
            let submits = http::intake(&server.endpoint, 64, plan.b3_secs, http::Route::Submit).await?;
            let server_cpu = server.cpu_seconds() - server_cpu;
            let client_cpu = server::cpu_seconds("self") - client_cpu;
            eprintln!(
                "    during the intake: server {:.0}%, load generator {:.0}% of one core",
                100.0 * server_cpu / plan.b3_secs,
                100.0 * client_cpu / plan.b3_secs
            );
            let after = http::intake(&server.endpoint, 64, health_secs, http::Route::Health).await?;
            let accepted = submits.per_s * plan.b3_secs;
            let per_accept = (server_cpu * 1e6 / accepted, client_cpu * 1e6 / accepted);
            Ok::<_, anyhow::Error>((submits, echo, health, after, per_accept))
        }
        .await;
        server.stop().await?;
        let (s, e, h, a, (server_us, client_us)) = result?;
        eprintln!(
            "    POST {:.0}/s p50 {:.2} p99 {:.2} ms ({} errors); echo {:.0}/s p99 {:.2} ms; /health {:.0}/s p99 \
             {:.2} ms; after {:.0}/s",
            s.per_s, s.latency.0, s.latency.1, s.errors, e.per_s, e.latency.1, h.per_s, h.latency.1, a.per_s
        );
        if s.errors > 0 || e.errors > 0 || h.errors > 0 || a.errors > 0 {
            bail!(
                "{} submits, {} echoes and {} health checks were not answered as expected",
                s.errors,
                e.errors,
                h.errors + a.errors
            );
        }
        Ok(vec![
            s.per_s,
            s.latency.0,
            s.latency.1,
            s.latency.2,
            e.per_s,
            e.latency.0,
            e.latency.1,
            h.per_s,
            h.latency.0,
            h.latency.1,
            a.per_s,
            a.latency.1,
            server_us,
            client_us,
        ])
    })
    .await;
    let mut f = figures.into_iter();
    let mut next = || f.next().unwrap_or_else(|| Err("missing".to_owned()));
    rows.push(
        Row::new("B3_submit_accepts_per_s", "B3 POST /api/v1/tasks, 64 connections: durable accepts", "req/s", next())
            .target(Target::AtLeast(20_000.0)),
    );
    rows.push(Row::new("B3_submit_p50_ms", "B3 POST /api/v1/tasks: latency p50", "ms", next()));
    rows.push(
        Row::new("B3_submit_p99_ms", "B3 POST /api/v1/tasks: latency p99", "ms", next()).target(Target::AtMost(10.0)),
    );
    rows.push(Row::new("B3_submit_max_ms", "B3 POST /api/v1/tasks: latency max", "ms", next()));
    rows.push(Row::new(
        "B3_echo_per_s",
        "B3 POST /api/v1/echo (the same body, echoed), 64 connections (the HTTP stack's ceiling)",
        "req/s",
        next(),
    ));
    rows.push(Row::new("B3_echo_p50_ms", "B3 POST /api/v1/echo: latency p50", "ms", next()));
    rows.push(Row::new("B3_echo_p99_ms", "B3 POST /api/v1/echo: latency p99", "ms", next()));
    rows.push(Row::new("B3_health_per_s", "B3 GET /health, 64 connections, empty store", "req/s", next()));
    rows.push(Row::new("B3_health_p50_ms", "B3 GET /health, empty store: latency p50", "ms", next()));
    rows.push(Row::new("B3_health_p99_ms", "B3 GET /health, empty store: latency p99", "ms", next()));
    rows.push(Row::new("B3_health_after_per_s", "B3 GET /health over the runs the intake stored", "req/s", next()));
    rows.push(Row::new("B3_health_after_p99_ms", "B3 GET /health over the runs the intake stored: p99", "ms", next()));
    rows.push(Row::new(
        "B3_server_cpu_us_per_accept",
        "B3: CPU time of `serve` per accepted run (executing it included)",
        "µs",
        next(),
    ));
    rows.push(Row::new(
        "B3_loadgen_cpu_us_per_accept",
        "B3: CPU time of the load generator per accepted run",
        "µs",
        next(),
    ));
}

async fn b5(plan: &Plan, data_root: &Path, rows: &mut Vec<Row>) {
    eprintln!("B5 memory: idle, and with {} pending runs × {}", plan.b5_pending, plan.latency_repeat);
    let figures = repeat_many(plan.latency_repeat, "B5", 3, || async {
        let dir = data_dir(data_root)?;
        let m = memory::measure(dir.path(), plan.b5_pending).await?;
        eprintln!("    idle {:.1} MiB; with pending runs {:.1} MiB", m.idle, m.pending);
        Ok(vec![m.idle, m.pending, m.pending - m.idle])
    })
    .await;
    let mut f = figures.into_iter();
    let mut next = || f.next().unwrap_or_else(|| Err("missing".to_owned()));
    let n = report::num(plan.b5_pending as f64);
    rows.push(
        Row::new("B5_idle_rss_mib", "B5 `serve` idle, empty store: VmRSS", "MiB", next()).target(Target::AtMost(30.0)),
    );
    rows.push(Row::new("B5_pending_rss_mib", format!("B5 `serve` idle over {n} pending runs: VmRSS"), "MiB", next()));
    rows.push(Row::new("B5_pending_delta_mib", format!("B5 growth from 0 to {n} pending runs"), "MiB", next()));
}

/// Latency of a 4 KiB write + `fdatasync` on the data disk (what a durable
/// SQLite commit pays at least once): p50 and p99 of 200.
fn fsync_probe(dir: &Path) -> String {
    use std::io::Write as _;
    let probe = || -> Result<(f64, f64)> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(format!("fsync-probe-{}", std::process::id()));
        let mut file = std::fs::File::create(&path)?;
        let mut times = Vec::new();
        for _ in 0..200 {
            let start = Instant::now();
            file.write_all(&[0u8; 4096])?;
            file.sync_data()?;
            times.push(start.elapsed());
        }
        drop(file);
        std::fs::remove_file(&path)?;
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        Ok((ms(times[times.len() / 2]), ms(times[times.len() * 99 / 100])))
    };
    match probe() {
        Ok((p50, p99)) => format!("p50 {p50:.3} ms, p99 {p99:.3} ms per 4 KiB write + fdatasync"),
        Err(error) => format!("probe failed: {error}"),
    }
}

fn write_report(plan: &Plan, machine: &Machine, rows: &[Row], notes: &Notes) -> Result<()> {
    std::fs::create_dir_all(plan.out.join("bench"))?;
    let json = report::results_json(machine, plan.mode, rows);
    let json_path = plan.out.join("bench/results.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&json)? + "\n")?;
    let md_path = plan.out.join("BENCHMARKS.md");
    let mut md = String::new();
    md.push_str(&report::header(plan.mode, machine, plan.repeat, plan.latency_repeat));
    md.push_str(&report::markdown_tables(rows));
    md.push_str("\n### Configuration\n\n");
    for line in &notes.lines {
        md.push_str(&format!("- {line}\n"));
    }
    // A peer on several rows (B2's percentiles) is described once.
    let mut described = std::collections::HashSet::new();
    for row in rows {
        for peer in &row.peers {
            let line = format!("- {}: {}\n", peer.name, peer.config);
            if !peer.config.is_empty() && described.insert(line.clone()) {
                md.push_str(&line);
            }
        }
    }
    let analysis = plan.out.join("bench/ANALYSIS.md");
    if let Ok(text) = std::fs::read_to_string(&analysis) {
        md.push('\n');
        md.push_str(&text);
    }
    std::fs::write(&md_path, md)?;
    eprintln!("wrote {} and {}", md_path.display(), json_path.display());
    Ok(())
}
