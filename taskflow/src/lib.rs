#![doc = include_str!("../../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

// The library is `taskflow-core`, re-exported whole: `taskflow::store`,
// `taskflow::executor`, `taskflow::Client`… keep their paths. This crate adds
// the command line (`App`) and, with `web`, the control plane.
pub use taskflow_core::*;

mod app;

pub use app::App;
pub use app::error::{Error, Result};

/// The control plane crate (REST API, web UI, auth), for embedding it.
#[cfg(feature = "web")]
pub use taskflow_web as web;

/// The control plane over a [`Client`](client::Client), as `serve` runs it:
/// `web::router(Plane::new(client), auth, &config)`. (Kept at this path for
/// embedders; it lives in `taskflow-web`.)
#[cfg(feature = "web")]
pub mod control_plane {
    pub use taskflow_web::convert::{wire_function, wire_run};
    pub use taskflow_web::plane::{Plane, PlaneError};
}

/// Registers a function as a task.
///
/// ```
/// /// Add two numbers together
/// ///
/// /// # Arguments
/// /// * `a` - the first addend
/// /// * `b` - the second addend
/// #[taskflow::task(title = "add_with_default", retries = 2, timeout = "30s", tags = ["math"], defaults(b = 1))]
/// fn add_numbers(a: i64, b: i64) -> i64 {
///     a + b
/// }
///
/// assert_eq!(add_numbers(1, 2), 3); // still an ordinary function
/// let def = taskflow::task_def("add_with_default").unwrap();
/// assert_eq!(def.description(), "Add two numbers together");
/// assert_eq!(def.args_schema()["properties"]["b"]["default"], 1);
/// ```
///
/// The function may be `async`; its arguments are any types implementing
/// `Deserialize + JsonSchema` (an `Option<T>` is optional in the payload);
/// it returns a `T: Serialize + JsonSchema`, `()`, or `Result<T, E>` with
/// `E: Display` (an `Err` fails the run with that message). An optional
/// first parameter `&TaskContext` gives the run's id, logger, progress and
/// cancellation; it is not part of the payload.
///
/// Options:
///
/// | option | meaning |
/// | --- | --- |
/// | `title = "name"` | the task's unique name (default: the function's name) |
/// | `description = "..."` | default: the doc comment's first paragraph |
/// | `timeout = "30s"` | how long one attempt may run (`ms`, `s`, `m`, `h`, `d`) |
/// | `retries = 2` | how often a failed run is retried |
/// | `retry_delay = "5s"` | the base of the exponential back-off between attempts (default 1 s) |
/// | `concurrency = 4` | at most this many runs of the task at once, across all workers |
/// | `executor = "thread"` | `thread`, `process` or `docker` |
/// | `tags = ["a", "b"]` | labels for filtering |
/// | `defaults(b = 1, name = "x")` | values applied when an argument is absent, shown as `default` in the schema |
/// | `image = "debian:bookworm"` | Docker: a local base image instead of `scratch` (never pulled) |
/// | `network = true` | Docker: give the container a network (default: none, only loopback) |
/// | `memory = "256MiB"` | Docker: the memory limit, swap included (default 512 MiB) |
/// | `cpus = 1.5` | Docker: the CPU limit (default 1) |
/// | `pids = 64` | Docker: the most processes and threads (default 128, at most 4096) |
/// | `env = ["API_TOKEN"]` | Docker: environment variables passed from the server's environment |
///
/// Argument descriptions come from the rustdoc `# Arguments` list.
pub use taskflow_macros::task;
