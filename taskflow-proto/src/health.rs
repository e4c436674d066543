//! [`Health`]: how the server is, as `/health` answers.

use serde::{Deserialize, Serialize};

/// How the server is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Health {
    /// `ok` when the store answers, else `unavailable`.
    pub status: String,
    /// The store.
    pub store: Component,
    /// Each executor by name: `thread`, `process`, `docker`.
    pub executors: Vec<ExecutorHealth>,
}

/// A part of the server and whether it works.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Component {
    /// Whether it works now.
    pub available: bool,
    /// What it is, or why it does not work.
    pub detail: String,
}

/// An executor and whether runs can use it now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExecutorHealth {
    /// `thread`, `process` or `docker`.
    pub name: String,
    /// Whether runs can use it now.
    pub available: bool,
    /// What it is, or why it does not work.
    pub detail: String,
}
