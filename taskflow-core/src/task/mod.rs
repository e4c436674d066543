//! Tasks: the [`registry`] of every `#[task]` linked into the binary, the JSON
//! Schema of their arguments, the checking of payloads against it, and the
//! [`TaskContext`](context::TaskContext) a running task sees.

pub(crate) mod context;
pub(crate) mod payload;
pub mod registry;
pub(crate) mod schema;
