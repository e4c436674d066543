//! The tasks linked into the binary: each `#[task]` submits a [`TaskDef`] at
//! link time (`inventory`), and [`tasks`] / [`task_def`] find them from any
//! module or crate.

use std::collections::BTreeMap;
use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::OnceLock;
use std::task::Poll;
use std::time::Duration;

use serde_json::{Map, Value};

pub use crate::error::TaskResult;
use crate::error::{PayloadError, TaskError};
pub use crate::future::BoxFuture;
pub use crate::run::ExecutorKind;
use crate::task::context::TaskContext;
use crate::task::payload;

/// The options given in `#[task(...)]`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TaskOptions {
    /// How long one attempt may run (`timeout = "1m"`).
    pub timeout: Option<Duration>,
    /// How many times a failed run is retried (`retries = 2`).
    pub retries: u32,
    /// The base of the exponential retry back-off (`retry_delay = "5s"`;
    /// 1 s when not given).
    pub retry_delay: Duration,
    /// At most this many runs of the task at once, across all workers
    /// (`concurrency = 4`).
    pub concurrency: Option<u32>,
    /// Where runs execute by default (`executor = "thread"`).
    pub executor: ExecutorKind,
    /// Free-form labels for filtering (`tags = ["math"]`).
    pub tags: &'static [&'static str],
    /// The queue its runs wait in (`queue = "gpu"`; `default` when not
    /// given): only workers taking that queue get them.
    pub queue: &'static str,
    /// How the Docker executor runs the task's containers.
    pub container: ContainerOptions,
}

/// The options of a task's Docker containers: what a container of the task
/// may do beyond the hardened defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ContainerOptions {
    /// A local base image instead of `scratch` (`image = "debian:bookworm"`);
    /// never pulled.
    pub image: Option<&'static str>,
    /// Whether the container gets the default bridge network (`network =
    /// true`); without, it has only loopback.
    pub network: bool,
    /// The memory limit in bytes (`memory = "256MiB"`; swap is the same, so
    /// none beyond it). `None`: the executor's default.
    pub memory_bytes: Option<u64>,
    /// The CPU limit in billionths of a CPU (`cpus = 1.5` is 1_500_000_000).
    /// `None`: the executor's default.
    pub nano_cpus: Option<u64>,
    /// The most processes and threads the container may hold (`pids = 64`).
    /// `None`: the executor's default.
    pub pids: Option<u32>,
    /// Environment variables passed from the server's environment (`env =
    /// ["API_TOKEN"]`); a container gets no other variable of the server.
    pub env: &'static [&'static str],
}

/// How the generated code calls the user's function.
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub enum Invoker {
    /// A plain `fn`: called on the caller's thread.
    Sync(fn(&TaskContext, Value) -> TaskResult),
    /// An `async fn`: a future to poll.
    Async(fn(TaskContext, Value) -> BoxFuture<TaskResult>),
}

/// What `#[task]` knows at compile time; turned into a [`TaskDef`].
#[doc(hidden)]
#[derive(Debug)]
pub struct TaskDecl {
    pub title: &'static str,
    pub description: &'static str,
    pub signature: &'static str,
    pub module_path: &'static str,
    pub file: &'static str,
    pub line: u32,
    pub is_async: bool,
    pub arg_docs: &'static [(&'static str, &'static str)],
    pub defaults: Option<fn() -> Value>,
    pub args_schema: fn() -> Value,
    pub output_schema: fn() -> Value,
    pub invoke: Invoker,
    pub timeout_ms: Option<u64>,
    pub retries: u32,
    pub retry_delay_ms: Option<u64>,
    pub concurrency: Option<u32>,
    pub executor: ExecutorKind,
    pub tags: &'static [&'static str],
    pub queue: &'static str,
    pub image: Option<&'static str>,
    pub network: bool,
    pub memory_bytes: Option<u64>,
    pub nano_cpus: Option<u64>,
    pub pids: Option<u32>,
    pub env: &'static [&'static str],
}

/// A task: its description, schemas and options, and the way to run it.
pub struct TaskDef {
    decl: TaskDecl,
    options: TaskOptions,
    args_schema: OnceLock<Value>,
    output_schema: OnceLock<Value>,
    defaults: OnceLock<Map<String, Value>>,
}

/// What `#[task]` submits to `inventory`: a reference to the task's own
/// `static` (a `static` may hold the schema caches, a submitted value may not).
#[doc(hidden)]
#[derive(Debug)]
pub struct TaskEntry(pub &'static TaskDef);

inventory::collect!(TaskEntry);

impl fmt::Debug for TaskDef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskDef")
            .field("title", &self.title())
            .field("signature", &self.signature())
            .field("location", &self.location())
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl TaskDef {
    #[doc(hidden)]
    pub const fn __new(decl: TaskDecl) -> TaskDef {
        let timeout = match decl.timeout_ms {
            Some(ms) => Some(Duration::from_millis(ms)),
            None => None,
        };
        let retry_delay = match decl.retry_delay_ms {
            Some(ms) => Duration::from_millis(ms),
            None => Duration::from_secs(1),
        };
        let options = TaskOptions {
            timeout,
            retries: decl.retries,
            retry_delay,
            concurrency: decl.concurrency,
            executor: decl.executor,
            tags: decl.tags,
            queue: decl.queue,
            container: ContainerOptions {
                image: decl.image,
                network: decl.network,
                memory_bytes: decl.memory_bytes,
                nano_cpus: decl.nano_cpus,
                pids: decl.pids,
                env: decl.env,
            },
        };
        TaskDef {
            decl,
            options,
            args_schema: OnceLock::new(),
            output_schema: OnceLock::new(),
            defaults: OnceLock::new(),
        }
    }

    /// The unique name: the function's name unless `title = "..."` was given.
    pub fn title(&self) -> &'static str {
        self.decl.title
    }

    /// The `description` option, or the doc comment's first paragraph.
    pub fn description(&self) -> &'static str {
        self.decl.description
    }

    /// The function's signature as written, without the context:
    /// `add_numbers(a: i64, b: i64) -> i64`.
    pub fn signature(&self) -> &'static str {
        self.decl.signature
    }

    /// The module that defines the task, e.g. `my_app::math`.
    pub fn module_path(&self) -> &'static str {
        self.decl.module_path
    }

    /// The source file of the task.
    pub fn file(&self) -> &'static str {
        self.decl.file
    }

    /// The line of the `#[task]` attribute.
    pub fn line(&self) -> u32 {
        self.decl.line
    }

    /// `file:line`, for messages.
    pub fn location(&self) -> String {
        format!("{}:{}", self.decl.file, self.decl.line)
    }

    /// Whether the function is `async`.
    pub fn is_async(&self) -> bool {
        self.decl.is_async
    }

    /// The options given in `#[task(...)]`.
    pub fn options(&self) -> &TaskOptions {
        &self.options
    }

    /// The JSON Schema (draft 2020-12) of the payload: an object with
    /// `properties`, `required`, argument `description`s and `default`s,
    /// and `$defs` for the user's types. Computed once.
    pub fn args_schema(&self) -> &Value {
        self.args_schema.get_or_init(|| {
            let mut schema = (self.decl.args_schema)();
            crate::task::schema::describe_args(
                &mut schema,
                self.decl.title,
                self.decl.description,
                self.decl.arg_docs,
                self.defaults(),
            );
            schema
        })
    }

    /// The JSON Schema of the result (`{"type": "null"}` for `()`).
    pub fn output_schema(&self) -> &Value {
        self.output_schema.get_or_init(self.decl.output_schema)
    }

    /// The argument defaults given by `defaults(...)`.
    pub fn defaults(&self) -> &Map<String, Value> {
        self.defaults.get_or_init(|| match self.decl.defaults.map(|f| f()) {
            Some(Value::Object(map)) => map,
            _ => Map::new(),
        })
    }

    /// Applies the defaults to absent fields and checks the payload against
    /// the schema: the payload a run will actually receive.
    pub fn prepare(&self, mut payload: Value) -> Result<Value, PayloadError> {
        if let Value::Object(map) = &mut payload {
            for (key, value) in self.defaults() {
                if !map.contains_key(key) {
                    map.insert(key.clone(), value.clone());
                }
            }
        }
        payload::normalize_integers(&mut payload);
        payload::validate(self.args_schema(), &payload)?;
        Ok(payload)
    }

    /// Checks and deserializes `payload`, then runs the task and turns its
    /// return value into JSON. A panic becomes [`TaskError::Panicked`].
    ///
    /// A sync task runs on the thread that polls this future; the thread
    /// executor moves them to blocking threads instead.
    pub async fn invoke(&self, ctx: &TaskContext, payload: Value) -> TaskResult {
        let payload = self.prepare(payload)?;
        match self.decl.invoke {
            Invoker::Sync(call) => catch_panic(|| call(ctx, payload)),
            Invoker::Async(call) => invoke_async(call, ctx.clone(), payload).await,
        }
    }

    /// [`invoke`](Self::invoke) for code outside an async runtime: async
    /// tasks run on a current-thread runtime made for the call.
    ///
    /// # Panics
    /// When called from inside a Tokio runtime with an async task (Tokio
    /// cannot nest runtimes); use `invoke` there.
    pub fn invoke_blocking(&self, ctx: &TaskContext, payload: Value) -> TaskResult {
        let payload = self.prepare(payload)?;
        match self.decl.invoke {
            Invoker::Sync(call) => catch_panic(|| call(ctx, payload)),
            Invoker::Async(call) => {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| TaskError::Failed { message: format!("cannot start a runtime: {e}") })?;
                runtime.block_on(invoke_async(call, ctx.clone(), payload))
            }
        }
    }

    /// The invoker, for executors that place sync and async tasks apart.
    pub(crate) fn invoker(&self) -> Invoker {
        self.decl.invoke
    }
}

/// Runs `f`, turning a panic into [`TaskError::Panicked`].
pub(crate) fn catch_panic(f: impl FnOnce() -> TaskResult) -> TaskResult {
    std::panic::catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|panic| Err(panicked(&*panic)))
}

/// Calls an async task and awaits its future, turning a panic into
/// [`TaskError::Panicked`]: one while its arguments are converted (user
/// code: a `Deserialize` or `From` impl, run by `call` before the future
/// exists) as well as one while the future is polled.
pub(crate) async fn invoke_async(
    call: fn(TaskContext, Value) -> BoxFuture<TaskResult>,
    ctx: TaskContext,
    payload: Value,
) -> TaskResult {
    match std::panic::catch_unwind(AssertUnwindSafe(move || call(ctx, payload))) {
        Ok(future) => catch_panic_async(future).await,
        Err(panic) => Err(panicked(&*panic)),
    }
}

/// Polls `future`, turning a panic into [`TaskError::Panicked`].
pub(crate) async fn catch_panic_async(future: impl Future<Output = TaskResult>) -> TaskResult {
    let mut future = std::pin::pin!(future);
    std::future::poll_fn(move |cx| match std::panic::catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx))) {
        Ok(poll) => poll,
        Err(panic) => Poll::Ready(Err(panicked(&*panic))),
    })
    .await
}

fn panicked(panic: &(dyn std::any::Any + Send)) -> TaskError {
    let message = if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_owned()
    };
    TaskError::Panicked { message }
}

/// The tasks linked into this binary are inconsistent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// Two tasks share a title.
    #[error(
        "two tasks are titled `{title}`: one at {first}, one at {second}; rename one with #[task(title = \"...\")]"
    )]
    DuplicateTitle {
        /// The shared title.
        title: String,
        /// The location of one.
        first: String,
        /// The location of the other.
        second: String,
    },
    /// A `defaults(...)` value does not fit its argument.
    #[error("task `{title}` at {location}: the default of `{argument}` does not fit its type: {message}")]
    InvalidDefault {
        /// The task.
        title: String,
        /// Where the task is defined.
        location: String,
        /// The argument.
        argument: String,
        /// What is wrong.
        message: String,
    },
}

struct Registry {
    /// All tasks, sorted by title then location.
    sorted: Vec<&'static TaskDef>,
    by_title: BTreeMap<&'static str, &'static TaskDef>,
    check: Result<(), RegistryError>,
}

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let mut sorted: Vec<&'static TaskDef> = inventory::iter::<TaskEntry>.into_iter().map(|entry| entry.0).collect();
        sorted.sort_by(|a, b| (a.title(), a.file(), a.line()).cmp(&(b.title(), b.file(), b.line())));
        let mut by_title = BTreeMap::new();
        let mut check = Ok(());
        for def in &sorted {
            if let Some(first) = by_title.insert(def.title(), *def) {
                if check.is_ok() {
                    check = Err(RegistryError::DuplicateTitle {
                        title: def.title().to_owned(),
                        first: first.location(),
                        second: def.location(),
                    });
                }
                // Keep the first, so lookups are stable while the error is reported.
                by_title.insert(def.title(), first);
            }
        }
        if check.is_ok() {
            check = sorted.iter().try_for_each(|def| check_defaults(def));
        }
        Registry { sorted, by_title, check }
    })
}

/// Each default must pass its argument's schema.
fn check_defaults(def: &TaskDef) -> Result<(), RegistryError> {
    let schema = def.args_schema();
    for (argument, value) in def.defaults() {
        let mut probe = Map::new();
        probe.insert(argument.clone(), value.clone());
        let property_schema = serde_json::json!({
            "properties": { argument.clone(): schema["properties"][argument].clone() },
            "$defs": schema.get("$defs").cloned().unwrap_or(Value::Null),
        });
        if let Err(error) = payload::validate(&property_schema, &Value::Object(probe)) {
            return Err(RegistryError::InvalidDefault {
                title: def.title().to_owned(),
                location: def.location(),
                argument: argument.clone(),
                message: error.to_string(),
            });
        }
    }
    Ok(())
}

/// Every task linked into the binary, from any module or crate, sorted by
/// title.
///
/// ```
/// # extern crate taskflow_core as taskflow;
/// #[taskflow::task]
/// fn ping() -> String { "pong".into() }
///
/// assert!(taskflow::tasks().any(|def| def.title() == "ping"));
/// ```
pub fn tasks() -> impl ExactSizeIterator<Item = &'static TaskDef> {
    registry().sorted.iter().copied()
}

/// The task titled `title`, if one is linked into the binary.
pub fn task_def(title: &str) -> Option<&'static TaskDef> {
    registry().by_title.get(title).copied()
}

/// Checks the tasks once at start-up: titles are unique and every default
/// fits its argument. `taskflow::App` calls it before any command.
pub fn check() -> Result<(), RegistryError> {
    registry().check.clone()
}
