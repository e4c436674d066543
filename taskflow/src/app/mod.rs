//! [`App`]: the user's `main`. Parses the command line (`serve`, `list`,
//! `call`, `submit`, `status`, `token`, `worker`, `worker-token` and the hidden
//! worker entry `__run`)
//! with `TASKFLOW_*` environment equivalents, and runs the command.

pub(crate) mod error;
mod flags;
mod web;
mod workers;

use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use serde_json::{Value, json};

use crate::TaskContext;
use crate::TaskError;
use crate::client::Client;
use crate::engine::{Engine, EngineConfig};
use crate::executor::ThreadExecutor;
use crate::executor::frame::ResultFrame;
use crate::registry::{self, TaskDef};
use crate::run::RunId;
use crate::store::{SqliteStore, Store};
use crate::wire;
use error::{Error, Result};

/// The command line of a TaskFlow app.
#[derive(Debug, Parser)]
#[command(about = "Run this binary's TaskFlow tasks", long_about = None)]
struct Cli {
    #[command(flatten)]
    store: StoreArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

/// Where runs are stored; given before a command's own arguments.
#[derive(Debug, Clone, Args)]
struct StoreArgs {
    /// Directory of the SQLite store (`taskflow.db`)
    #[arg(long, global = true, env = "TASKFLOW_DATA_DIR", default_value = ".")]
    data_dir: PathBuf,
    /// A PostgreSQL URL (`postgres://…`) to use instead of SQLite
    #[arg(long, global = true, env = "TASKFLOW_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the control plane (web UI and REST API) and run the engine on
    /// the store until stopped (the default)
    Serve(ServeArgs),
    /// List the tasks of this binary: title, signature, description
    List {
        /// Print JSON: each task as the REST API describes it (schemas and
        /// every option), with where it is defined
        #[arg(long)]
        json: bool,
    },
    /// Run one task here and print its JSON result
    ///
    /// Arguments come from `--payload '<json>'` or flags named after the
    /// task's arguments: `call add_numbers --a 2 --b 3`. `call <title> --help`
    /// lists a task's flags.
    Call(CallArgs),
    /// Store a run for the engine of `serve` and print it as JSON
    ///
    /// Takes the same arguments as `call`: `submit add_numbers --a 2 --b 3`.
    /// Prints the run as the REST API shows it (`task_id`, RFC 3339 times).
    Submit(CallArgs),
    /// Print a run as JSON, as `GET /api/v1/tasks/{task_id}` shows it
    Status {
        /// The run's id: the `task_id` that `submit` printed
        run_id: String,
    },
    /// Print a bearer token for the control plane's API, for scripts
    ///
    /// Signed with the secret in the server's data directory (or
    /// TASKFLOW_SECRET): give the server's `--data-dir`, as the `serve`
    /// banner shows.
    Token {
        /// How long the token is valid, in seconds
        #[arg(long, default_value_t = 86_400)]
        ttl_seconds: u64,
        /// Create the data directory's secret if it has none, for a server
        /// started later on this data directory
        #[arg(long)]
        create: bool,
    },
    /// Work for a control plane elsewhere: register once with a provision
    /// token, then claim and execute its runs until stopped
    Worker(workers::WorkerArgs),
    /// Make a one-time provision token for a remote worker (admin)
    #[command(name = "worker-token", subcommand)]
    WorkerToken(WorkerTokenCommand),
    /// Worker entry: payload JSON on stdin, one result frame on stdout
    #[command(name = "__run", hide = true)]
    Run {
        /// The task to run
        title: String,
    },
}

#[derive(Debug, Subcommand)]
enum WorkerTokenCommand {
    /// Store a provision token and print it: a worker registers with it
    /// once, within its time to live
    Create {
        /// The worker's name, shown on the Workers page
        #[arg(long)]
        name: String,
        /// How long the token may be used: `90s`, `15m`, `1h`, `7d`
        #[arg(long, default_value = "1h", value_parser = workers::parse_ttl)]
        ttl: std::time::Duration,
    },
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Address to listen on
    #[arg(long, env = "TASKFLOW_ADDR", default_value = "127.0.0.1:8000")]
    addr: SocketAddr,
    /// How long running runs may finish after a stop signal before they are
    /// handed back to the queue, in seconds
    #[arg(long, env = "TASKFLOW_GRACE_SECONDS", default_value_t = 30)]
    grace: u64,
    /// Finished runs older than this many days are deleted with their logs;
    /// 0 keeps them forever
    #[arg(long, env = "TASKFLOW_RETENTION_DAYS", default_value_t = 7)]
    retention_days: u64,
    /// How many runs this server executes at once
    #[arg(long, env = "TASKFLOW_MAX_CONCURRENCY", default_value_t = 32)]
    max_concurrency: usize,
    /// The most log text one attempt of a run stores, in bytes; the rest is
    /// dropped after a warning line
    #[arg(long, env = "TASKFLOW_MAX_LOG_BYTES", default_value_t = 10 * 1024 * 1024)]
    max_log_bytes: usize,
    /// How long a claim holds a run without a heartbeat, in seconds
    #[arg(long, env = "TASKFLOW_LEASE_SECONDS", default_value_t = 30)]
    lease_seconds: u64,
    /// How often leases are renewed, in seconds (well under the lease)
    #[arg(long, env = "TASKFLOW_HEARTBEAT_SECONDS", default_value_t = 10)]
    heartbeat_seconds: u64,
    /// How often runs of dead workers are looked for, in seconds
    #[arg(long, env = "TASKFLOW_RESCUE_SECONDS", default_value_t = 5)]
    rescue_seconds: u64,
    /// The largest request body the control plane accepts, in bytes
    #[arg(long, env = "TASKFLOW_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    max_body_bytes: usize,
    /// Requests the control plane handles at once; more get 503 at once
    #[arg(long, env = "TASKFLOW_MAX_CONCURRENT_REQUESTS", default_value_t = 512)]
    max_concurrent_requests: usize,
    /// Seconds a client may take to send a request's headers, then its body
    #[arg(long, env = "TASKFLOW_READ_TIMEOUT_SECONDS", default_value_t = 10)]
    read_timeout_seconds: u64,
    /// Who executes runs: `push` (this server's own worker only; the
    /// polling routes answer 403), `polling` (remote workers only) or
    /// `hybrid` (both: whichever is free first). Also read from
    /// TASK_ASSIGNMENT_MODE
    #[arg(long, env = "TASKFLOW_ASSIGNMENT_MODE", value_enum)]
    assignment_mode: Option<AssignmentMode>,
    /// The queues whose runs this server's own worker executes,
    /// comma-separated (default: every queue; remote workers take theirs)
    #[arg(long, env = "TASKFLOW_QUEUES", value_delimiter = ',')]
    queues: Vec<String>,
    /// Containers each Docker task keeps started ahead, so a run need not
    /// create one (0: none)
    #[arg(long, env = "TASKFLOW_DOCKER_WARM", default_value_t = 0)]
    docker_warm: usize,
    /// Seconds a warm container may wait for a run before it is removed
    #[arg(long, env = "TASKFLOW_DOCKER_WARM_IDLE_SECONDS", default_value_t = 300)]
    docker_warm_idle_seconds: u64,
}

/// Who executes a server's runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum AssignmentMode {
    /// The server's own worker only.
    Push,
    /// Remote workers only.
    Polling,
    /// Both.
    Hybrid,
}

impl ServeArgs {
    /// The mode asked for, by flag, TASKFLOW_ASSIGNMENT_MODE or the seed's
    /// TASK_ASSIGNMENT_MODE; `hybrid` by default.
    fn assignment(&self) -> Result<AssignmentMode> {
        use clap::ValueEnum;
        if let Some(mode) = self.assignment_mode {
            return Ok(mode);
        }
        match std::env::var("TASK_ASSIGNMENT_MODE") {
            Ok(word) => AssignmentMode::from_str(&word, true).map_err(|_| {
                Error::Usage(format!("TASK_ASSIGNMENT_MODE=`{word}` is not a mode: use push, polling or hybrid"))
            }),
            Err(_) => Ok(AssignmentMode::Hybrid),
        }
    }
}

// No help flag: `call <title> --help` lists the task's flags, and a bare
// `call --help` reaches `title`, which prints this usage (`command_help`).
#[derive(Debug, Args)]
#[command(disable_help_flag = true)]
struct CallArgs {
    /// The task's title (see `list`); `<TITLE> --help` lists its flags
    #[arg(allow_hyphen_values = true)]
    title: String,
    /// `--payload '<json>'`, or `--<argument> <value>` for each argument
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0.., value_name = "ARGS")]
    args: Vec<String>,
}

/// A TaskFlow application: the tasks linked into this binary, driven by its
/// command line.
///
/// ```no_run
/// fn main() -> taskflow::Result<()> {
///     taskflow::App::from_env().run()
/// }
/// ```
#[derive(Debug, Clone)]
pub struct App {
    args: Vec<OsString>,
}

impl App {
    /// The app driven by this process's arguments.
    pub fn from_env() -> App {
        App { args: std::env::args_os().collect() }
    }

    /// The app driven by `args`, the first being the program's name.
    pub fn from_args<I, T>(args: I) -> App
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString>,
    {
        App { args: args.into_iter().map(Into::into).collect() }
    }

    /// Runs the command. `--help` and command-line mistakes print clap's
    /// usage and exit (code 2), as command-line tools do.
    pub fn run(self) -> Result<()> {
        let cli = Cli::parse_from(&self.args);
        // Background errors (the engine's) are reported through `tracing`;
        // an app that installed its own subscriber keeps it.
        let _ = tracing_subscriber::fmt().with_writer(std::io::stderr).with_target(false).try_init();
        registry::check()?;
        let program = self
            .args
            .first()
            .and_then(|p| PathBuf::from(p).file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "app".to_owned());
        let store = cli.store;
        match cli.command {
            None => serve(&program, &store, ServeArgs::parse_from_env()),
            Some(Command::Serve(args)) => serve(&program, &store, args),
            Some(Command::List { json }) => list(json),
            Some(Command::Call(args)) => call(&program, args),
            Some(Command::Submit(args)) => submit(&program, &store, args),
            Some(Command::Status { run_id }) => status(&store, &run_id),
            Some(Command::Token { ttl_seconds, create }) => token(&program, &store, ttl_seconds, create),
            Some(Command::Worker(args)) => workers::work(&program, &store, args),
            Some(Command::WorkerToken(WorkerTokenCommand::Create { name, ttl })) => {
                workers::create_token(&program, &store, &name, ttl)
            }
            Some(Command::Run { title }) => worker_run(&title),
        }
    }
}

impl ServeArgs {
    /// The engine's settings these arguments give.
    fn engine_config(&self) -> EngineConfig {
        use std::time::Duration;
        let retention =
            (self.retention_days > 0).then(|| Duration::from_secs(self.retention_days.saturating_mul(86_400)));
        let mut config = EngineConfig::default();
        config.retention = retention;
        config.max_concurrency = self.max_concurrency.max(1);
        config.max_log_bytes = self.max_log_bytes;
        config.lease = Duration::from_secs(self.lease_seconds.max(1));
        config.heartbeat_interval = Duration::from_secs(self.heartbeat_seconds.max(1));
        config.rescue_interval = Duration::from_secs(self.rescue_seconds.max(1));
        #[cfg(feature = "docker")]
        let config = {
            let mut config = config;
            config.docker.warm_containers = self.docker_warm;
            config.docker.warm_idle = Duration::from_secs(self.docker_warm_idle_seconds.max(1));
            config
        };
        config
    }

    /// `serve`'s arguments when no command is given: defaults and environment.
    fn parse_from_env() -> ServeArgs {
        #[derive(Parser)]
        struct Only {
            #[command(flatten)]
            serve: ServeArgs,
        }
        Only::parse_from(["serve"]).serve
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|source| Error::Io { context: "starting the async runtime".to_owned(), source })
}

/// Opens the store the arguments name: PostgreSQL for a database URL, else
/// SQLite in the data directory.
async fn open_store(args: &StoreArgs) -> Result<(Arc<dyn Store>, String)> {
    match &args.database_url {
        Some(url) => open_postgres(url).await,
        None => {
            let store = SqliteStore::open_in(&args.data_dir)?;
            let described = store.path().display().to_string();
            Ok((Arc::new(store), described))
        }
    }
}

#[cfg(feature = "postgres")]
async fn open_postgres(url: &str) -> Result<(Arc<dyn Store>, String)> {
    let store = crate::store::PostgresStore::connect(url).await?;
    let described = store.url().to_owned();
    Ok((Arc::new(store), described))
}

#[cfg(not(feature = "postgres"))]
async fn open_postgres(url: &str) -> Result<(Arc<dyn Store>, String)> {
    let _ = url;
    Err(Error::Usage(
        "TASKFLOW_DATABASE_URL names a PostgreSQL server, but this binary was built without taskflow's `postgres` feature; enable it in Cargo.toml or unset the URL to use SQLite".to_owned(),
    ))
}

fn serve(program: &str, store_args: &StoreArgs, args: ServeArgs) -> Result<()> {
    let runtime = runtime()?;
    let result = runtime.block_on(async {
        // Listening from before the banner, which tells how to stop: a stop
        // signal sent as soon as it is read must not kill the process.
        let stop = stop_signal();
        // From here on, whatever tasks print is log output: it goes to
        // stderr, and a closed stdout (a detached terminal) cannot fail a
        // run. Reserved before the engine starts, which may run a task at
        // once; the banner goes to the reserved writer.
        let mut out =
            reserve_stdout().map_err(|source| Error::Io { context: "redirecting stdout".to_owned(), source })?;
        let mode = args.assignment()?;
        let (store, described) = open_store(store_args).await?;
        let mut config = args.engine_config();
        config.executes = mode != AssignmentMode::Polling;
        config.queues = (!args.queues.is_empty()).then(|| args.queues.clone());
        let engine = Engine::start(store, config)?;
        let web = web::start(&engine, store_args, &args, mode != AssignmentMode::Push).await?;
        let docker = docker_warning(&engine).await;
        let result = (|| -> std::io::Result<()> {
            writeln!(
                out,
                "TaskFlow: {} tasks; engine `{}` works on {described}.",
                registry::tasks().len(),
                engine.config().worker_id
            )?;
            if let Some(warning) = &docker {
                writeln!(out, "{warning}")?;
            }
            web.banner(&mut out, program)?;
            writeln!(out, "Ctrl-C (or SIGTERM) stops, letting running runs finish for {}s.", args.grace)?;
            out.flush()
        })();
        drop(out);
        result.map_err(|source| Error::Io { context: "writing to stdout".to_owned(), source })?;
        stop.await;
        eprintln!("stopping: no new runs; waiting up to {}s for {} running", args.grace, engine.running_count());
        web.stop().await;
        engine.shutdown(std::time::Duration::from_secs(args.grace)).await;
        Ok(())
    });
    // A sync task that ignored its cancellation still holds a blocking
    // thread: do not wait for it past the grace period.
    runtime.shutdown_background();
    result
}

/// What to say at start when tasks of this binary run on Docker by default
/// but the engine cannot reach Docker: their runs would wait, then fail
/// `docker_unavailable`, with nothing at start to say why.
async fn docker_warning(engine: &Engine) -> Option<String> {
    let titles: Vec<&str> = registry::tasks()
        .filter(|def| def.options().executor == crate::ExecutorKind::Docker)
        .map(|def| def.title())
        .collect();
    if titles.is_empty() {
        return None;
    }
    let availability = engine.availability().await;
    let docker = availability.iter().find(|a| a.kind == crate::ExecutorKind::Docker)?;
    (!docker.available).then(|| {
        format!(
            "Warning: {} runs on Docker ({}), which is not available: {}. Their runs wait, then fail \
             `docker_unavailable`.",
            if titles.len() == 1 { "1 task".to_owned() } else { format!("{} tasks", titles.len()) },
            titles.join(", "),
            docker.detail
        )
    })
}

/// Completes on Ctrl-C (SIGINT) or SIGTERM. On Unix the handlers are
/// installed at the call, not when the future is first polled, so a signal
/// arriving in between is not lost (nor kills the process).
#[cfg(unix)]
fn stop_signal() -> impl Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let terminate = signal(SignalKind::terminate());
    let interrupt = signal(SignalKind::interrupt());
    async move {
        match (terminate, interrupt) {
            (Ok(mut terminate), Ok(mut interrupt)) => {
                tokio::select! {
                    _ = terminate.recv() => {}
                    _ = interrupt.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}

/// Completes on Ctrl-C.
#[cfg(not(unix))]
fn stop_signal() -> impl Future<Output = ()> {
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// `token`: a bearer token signed with this data directory's secret.
fn token(program: &str, store_args: &StoreArgs, ttl_seconds: u64, create: bool) -> Result<()> {
    let token = web::token(program, store_args, std::time::Duration::from_secs(ttl_seconds), create)?;
    println!("{token}");
    Ok(())
}

/// The task and payload `call` or `submit` (`command`) names, or `None`
/// once the help asked for is printed: the command's with `--help` in the
/// title's place, the task's flags after a title.
fn task_and_payload(program: &str, command: &str, args: &CallArgs) -> Result<Option<(&'static TaskDef, Value)>> {
    if is_help(&args.title) {
        println!("{}", command_help(program, command));
        return Ok(None);
    }
    let def = find(&args.title)?;
    if args.args.iter().any(|a| is_help(a)) {
        println!("{}", flags::help(program, command, def));
        return Ok(None);
    }
    let payload = flags::payload(def, command, &args.args).map_err(Error::Usage)?;
    Ok(Some((def, payload)))
}

fn submit(program: &str, store_args: &StoreArgs, args: CallArgs) -> Result<()> {
    let Some((def, payload)) = task_and_payload(program, "submit", &args)? else { return Ok(()) };
    let run = runtime()?.block_on(async {
        let (store, _) = open_store(store_args).await?;
        Client::for_store(store).submit(def.title(), payload).await.map_err(Error::from)
    })?;
    print_json(&wire::wire_run(run))
}

fn status(store_args: &StoreArgs, run_id: &str) -> Result<()> {
    let id: RunId = run_id.parse().map_err(Error::Usage)?;
    let run = runtime()?.block_on(async {
        let (store, _) = open_store(store_args).await?;
        Client::for_store(store).get(id).await.map_err(Error::from)
    })?;
    print_json(&wire::wire_run(run))
}

fn print_json(value: &impl serde::Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| TaskError::Output { message: e.to_string() })?;
    println!("{text}");
    Ok(())
}

/// `add_numbers --a <integer> --b <integer>`: how to call a task.
#[cfg_attr(feature = "web", allow(dead_code))]
fn example_call(def: &TaskDef) -> String {
    let mut call = def.title().to_owned();
    for flag in flags::describe(def) {
        if flag.required {
            call.push_str(&format!(" --{} <{}>", flag.name, flag.kind));
        }
    }
    call
}

fn list(as_json: bool) -> Result<()> {
    let mut out = std::io::stdout().lock();
    let result = if as_json {
        // Each task as `GET /api/v1/functions/{title}` shows it, and where
        // it is defined (which the API keeps to itself).
        let tasks: serde_json::Result<Vec<Value>> = registry::tasks()
            .map(|def| {
                let mut task = serde_json::to_value(wire::wire_function(def))?;
                if let Value::Object(fields) = &mut task {
                    fields.insert("module_path".to_owned(), json!(def.module_path()));
                    fields.insert("file".to_owned(), json!(def.file()));
                    fields.insert("line".to_owned(), json!(def.line()));
                }
                Ok(task)
            })
            .collect();
        tasks
            .and_then(|tasks| serde_json::to_writer_pretty(&mut out, &tasks))
            .map_err(std::io::Error::from)
            .and_then(|()| writeln!(out))
    } else {
        let width = registry::tasks().map(|d| d.title().len()).max().unwrap_or(0);
        registry::tasks().try_for_each(|def| {
            writeln!(out, "{:width$}  {}", def.title(), def.signature())?;
            if !def.description().is_empty() {
                writeln!(out, "{:width$}  {}", "", def.description())?;
            }
            Ok(())
        })
    };
    result.map_err(|source| Error::Io { context: "writing to stdout".to_owned(), source })
}

fn is_help(arg: &str) -> bool {
    arg == "--help" || arg == "-h"
}

/// The usage of one command, as clap prints it for `<command> --help`;
/// for `call` and `submit`, whose help flag is off so that `<title> --help`
/// reaches the task's flags.
fn command_help(program: &str, command: &str) -> String {
    let mut cli = <Cli as clap::CommandFactory>::command().bin_name(program);
    cli.build();
    cli.find_subcommand_mut(command).map(|c| c.render_long_help().to_string()).unwrap_or_default()
}

fn find(title: &str) -> Result<&'static TaskDef, TaskError> {
    registry::task_def(title).ok_or_else(|| TaskError::UnknownTask { title: title.to_owned() })
}

fn call(program: &str, args: CallArgs) -> Result<()> {
    let Some((def, payload)) = task_and_payload(program, "call", &args)? else { return Ok(()) };
    let mut out = reserve_stdout().map_err(|source| Error::Io { context: "redirecting stdout".to_owned(), source })?;
    let runtime = runtime()?;
    let ctx = TaskContext::new("cli");
    let result = runtime.block_on(ThreadExecutor::default().execute(def, ctx, payload, None));
    // A timed-out sync task may still hold a blocking thread: do not wait.
    runtime.shutdown_background();
    let result = result?;
    let text = serde_json::to_string_pretty(&result).map_err(|e| TaskError::Output { message: e.to_string() })?;
    let _ = std::io::stdout().flush();
    writeln!(out, "{text}").map_err(|source| Error::Io { context: "writing the result".to_owned(), source })
}

/// `__run <title>`: the worker entry of the process and Docker executors.
fn worker_run(title: &str) -> Result<()> {
    let io_error = |context: &str| {
        let context = context.to_owned();
        move |source| Error::Io { context, source }
    };
    let enveloped = std::env::var_os(crate::executor::frame::ENVELOPE_ENV).is_some_and(|v| v == "1");
    // An envelope is one line (compact JSON); the bare payload runs to the
    // end of the input.
    let mut input = String::new();
    if enveloped {
        std::io::stdin().read_line(&mut input).map_err(io_error("reading the envelope from stdin"))?;
    } else {
        std::io::stdin().read_to_string(&mut input).map_err(io_error("reading the payload from stdin"))?;
    }
    let mut frame_out = reserve_stdout().map_err(io_error("redirecting stdout to stderr"))?;
    let not_json = |e: serde_json::Error| {
        TaskError::Payload(crate::PayloadError::single("payload", format!("not valid JSON: {e}")))
    };
    let mut run_id = std::env::var("TASKFLOW_RUN_ID").unwrap_or_else(|_| "local".to_owned());
    let mut attempt = std::env::var("TASKFLOW_ATTEMPT").ok().and_then(|a| a.parse().ok()).unwrap_or(1);
    // A worker started ahead of its run learns the run with its payload.
    let payload = if enveloped {
        serde_json::from_str::<crate::executor::frame::Envelope>(&input).map_err(not_json).map(|envelope| {
            run_id = envelope.run_id;
            attempt = envelope.attempt;
            envelope.payload
        })
    } else if input.trim().is_empty() {
        Ok(Value::Object(Default::default()))
    } else {
        serde_json::from_str(&input).map_err(not_json)
    };
    let ctx = TaskContext::with_sink(run_id, attempt, std::sync::Arc::new(crate::StderrSink));
    let result = find(title).and_then(|def| def.invoke_blocking(&ctx, payload?));
    // Whatever the task printed goes out (to stderr) before the frame.
    let _ = std::io::stdout().flush();
    let frame = ResultFrame::from(result.clone());
    let mut line = serde_json::to_vec(&frame).map_err(|e| TaskError::Output { message: e.to_string() })?;
    line.push(b'\n');
    frame_out.write_all(&line).and_then(|()| frame_out.flush()).map_err(io_error("writing the result frame"))?;
    if enveloped {
        let _ = writeln!(std::io::stderr(), "{}", crate::executor::frame::END_LINE);
    }
    result.map(|_| ()).map_err(Error::Task)
}

/// Reserves standard output for the result: returns a writer to it and
/// points file descriptor 1 at standard error, so whatever a task prints
/// becomes log output instead of corrupting the result (or `__run`'s frame).
#[cfg(unix)]
fn reserve_stdout() -> std::io::Result<std::fs::File> {
    use std::os::fd::AsFd;
    let original = std::io::stdout().as_fd().try_clone_to_owned()?;
    rustix::stdio::dup2_stdout(std::io::stderr().as_fd())?;
    Ok(std::fs::File::from(original))
}

#[cfg(not(unix))]
fn reserve_stdout() -> std::io::Result<std::io::Stdout> {
    Ok(std::io::stdout())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clap::Parser as _;

    use super::*;

    #[test]
    fn serve_flags_reach_the_engine() {
        let cli = Cli::parse_from([
            "app",
            "serve",
            "--max-concurrency",
            "7",
            "--max-log-bytes",
            "1000",
            "--lease-seconds",
            "5",
            "--heartbeat-seconds",
            "2",
            "--rescue-seconds",
            "3",
            "--retention-days",
            "0",
            "--docker-warm",
            "2",
            "--docker-warm-idle-seconds",
            "60",
        ]);
        let Some(Command::Serve(args)) = cli.command else { panic!("not serve") };
        let config = args.engine_config();
        assert_eq!(config.max_concurrency, 7);
        assert_eq!(config.max_log_bytes, 1000);
        assert_eq!(config.lease, Duration::from_secs(5));
        assert_eq!(config.heartbeat_interval, Duration::from_secs(2));
        assert_eq!(config.rescue_interval, Duration::from_secs(3));
        assert_eq!(config.retention, None);
        #[cfg(feature = "docker")]
        {
            assert_eq!(config.docker.warm_containers, 2);
            assert_eq!(config.docker.warm_idle, Duration::from_secs(60));
        }
    }

    #[test]
    fn help_after_any_command_is_its_usage() {
        let cli = <Cli as clap::CommandFactory>::command();
        let commands: Vec<String> = cli.get_subcommands().map(|c| c.get_name().to_owned()).collect();
        assert!(commands.len() >= 7, "{commands:?}");
        for command in &commands {
            for help in ["--help", "-h"] {
                match Cli::try_parse_from(["app", command, help]) {
                    Err(e) => assert_eq!(e.kind(), clap::error::ErrorKind::DisplayHelp, "`{command} {help}`: {e}"),
                    Ok(Cli { command: Some(Command::Call(args) | Command::Submit(args)), .. }) => {
                        assert!(is_help(&args.title), "`{command} {help}`: {args:?}");
                        let usage = command_help("app", command);
                        assert!(
                            usage.contains(&format!("Usage: app {command} [OPTIONS] <TITLE> [ARGS]...")),
                            "{usage}"
                        );
                    }
                    Ok(other) => panic!("`{command} {help}` parsed as {other:?}"),
                }
            }
        }
        // Global flags before the title are still flags, not a title.
        let cli = Cli::try_parse_from(["app", "submit", "--data-dir", "d", "add_numbers", "--a", "1"]).unwrap();
        let Some(Command::Submit(args)) = cli.command else { panic!("not submit") };
        assert_eq!((args.title.as_str(), cli.store.data_dir.to_str()), ("add_numbers", Some("d")));
        assert_eq!(args.args, ["--a", "1"]);
    }

    #[test]
    fn serve_defaults_are_the_engine_defaults() {
        let config = ServeArgs::parse_from_env().engine_config();
        let defaults = EngineConfig::default();
        assert_eq!(
            (
                config.max_concurrency,
                config.max_log_bytes,
                config.lease,
                config.heartbeat_interval,
                config.rescue_interval
            ),
            (
                defaults.max_concurrency,
                defaults.max_log_bytes,
                defaults.lease,
                defaults.heartbeat_interval,
                defaults.rescue_interval
            )
        );
    }
}
