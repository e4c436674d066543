//! The control plane of TaskFlow: REST API, web UI and WebSockets.
//!
//! A skeleton for now. It will define the `ControlPlane` port it serves (list
//! tasks, submit, get, list, cancel, delete, subscribe, authenticate) and its
//! own wire types, and must never depend on `taskflow`: `taskflow`
//! implements the port, which keeps the crate graph acyclic and this crate
//! testable alone.

/// The version of the REST API this crate serves, as in `/api/v1`.
pub const API_VERSION: &str = "v1";
