//! [`Function`]: a task definition as the wire shows it.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ExecutorKind;

/// A task definition: what it takes and gives, and its options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Function {
    /// The unique name.
    pub title: String,
    /// The doc comment's first paragraph, or the `description` option.
    pub description: String,
    /// The Rust signature, for people.
    pub signature: String,
    /// Labels for filtering.
    pub tags: Vec<String>,
    /// Whether the function is `async`.
    pub is_async: bool,
    /// The task's options.
    pub options: FunctionOptions,
    /// JSON Schema (draft 2020-12) of the payload.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub args_schema: Value,
    /// JSON Schema (draft 2020-12) of the result.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub output_schema: Value,
}

/// A task's options, as `#[task(...)]` set them: every option it takes
/// but `title`, `description` and `defaults` (those are the task's title,
/// description and argument schema). The same object in the REST API and in
/// `list --json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FunctionOptions {
    /// How long one attempt may run, in milliseconds.
    pub timeout_ms: Option<u64>,
    /// How many times a failed run is retried.
    pub retries: u32,
    /// The base of the retry back-off, in milliseconds.
    pub retry_delay_ms: u64,
    /// At most this many runs at once, across workers.
    pub concurrency: Option<u32>,
    /// Where runs execute unless a submit says otherwise.
    // A string in the OpenAPI document: its `ExecutorName` lists only the
    // executors this server has, and a task may default to another.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub executor: ExecutorKind,
    /// Labels for filtering (as the task's `tags`).
    #[serde(default)]
    pub tags: Vec<String>,
    /// The queue its runs wait in: only workers taking it get them.
    #[serde(default = "default_queue")]
    pub queue: String,
    /// Docker: a local base image instead of `scratch` (never pulled).
    #[serde(default)]
    pub image: Option<String>,
    /// Docker: whether the container has a network; without, only loopback.
    #[serde(default)]
    pub network: bool,
    /// Docker: the memory limit in bytes, swap included; `null`: the
    /// executor's default (512 MiB).
    #[serde(default)]
    pub memory_bytes: Option<u64>,
    /// Docker: the CPU limit in CPUs (`1.5`); `null`: the executor's default (1).
    #[serde(default)]
    pub cpus: Option<f64>,
    /// Docker: the most processes and threads; `null`: the executor's default (128).
    #[serde(default)]
    pub pids: Option<u32>,
    /// Docker: the server's environment variables a container gets.
    #[serde(default)]
    pub env: Vec<String>,
}

/// The queue of a task that names none.
fn default_queue() -> String {
    "default".to_owned()
}
