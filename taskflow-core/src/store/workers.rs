//! The registry of remote workers: one-time provision tokens an admin
//! creates, and the workers that registered with one.
//!
//! The store keeps only SHA-256 digests of tokens (hex), never a token:
//! whoever reads the database cannot act as a worker. Making and hashing
//! tokens is the HTTP edge's business (`taskflow-web`), so this layer
//! needs no cryptography.

use serde::{Deserialize, Serialize};

use crate::run::{ExecutorKind, Timestamp};

/// A provision token to store: its digest, who it is for, until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewProvisionToken {
    /// The SHA-256 of the token, in hex.
    pub token_hash: String,
    /// The name the worker registering with it will carry.
    pub name: String,
    /// When it was made.
    pub created_at: Timestamp,
    /// When it stops being accepted.
    pub expires_at: Timestamp,
}

/// A worker registering with a provision token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// The SHA-256 (hex) of the provision token it presented.
    pub provision_hash: String,
    /// The SHA-256 (hex) of the worker token it will be given.
    pub token_hash: String,
    /// The new worker's id.
    pub worker_id: String,
    /// What the worker says of itself.
    pub profile: WorkerProfile,
    /// When it registered.
    pub now: Timestamp,
}

/// What a worker says of itself at registration.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct WorkerProfile {
    /// Its host name, as it reports it.
    pub host: String,
    /// Its version of the app.
    pub version: String,
    /// The executors it runs runs on.
    pub executors: Vec<ExecutorKind>,
    /// The titles of the tasks it has.
    pub tasks: Vec<String>,
    /// The queues it takes runs from.
    pub queues: Vec<String>,
    /// Tasks it has that the server will not give it runs of, each with
    /// why (its build's schema differs, the server has no such task).
    #[serde(default)]
    pub refused: Vec<(String, String)>,
}

/// A registered worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerRecord {
    /// Its id, the `worker_id` of the runs it holds.
    pub id: String,
    /// The name of the provision token it registered with.
    pub name: String,
    /// What it said of itself.
    pub profile: WorkerProfile,
    /// When it registered.
    pub registered_at: Timestamp,
    /// When it was last heard from.
    pub last_seen: Timestamp,
    /// When an admin revoked it; a revoked worker's token is refused.
    pub revoked_at: Option<Timestamp>,
}

/// Why a provision token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProvisionRefusal {
    /// No such token was ever made (or it was mistyped).
    #[error("this provision token is not known: check it, or ask an admin for a new one (`worker-token create`)")]
    Unknown,
    /// The token was used by a worker already: each registers once.
    #[error("this provision token was used already: each is good for one registration; ask an admin for a new one")]
    Used,
    /// The token's time ran out.
    #[error("this provision token has expired: ask an admin for a new one (`worker-token create --ttl`)")]
    Expired,
}

/// The registration's outcome for a provision token `(used, expires_at)`
/// found at `now`, or none found.
pub(super) fn check_provision(found: Option<(bool, Timestamp)>, now: Timestamp) -> Result<(), ProvisionRefusal> {
    match found {
        None => Err(ProvisionRefusal::Unknown),
        Some((true, _)) => Err(ProvisionRefusal::Used),
        Some((false, expires_at)) if expires_at <= now => Err(ProvisionRefusal::Expired),
        Some(_) => Ok(()),
    }
}

/// The columns a [`WorkerRecord`] is read from, in [`RawWorker`]'s order
/// (PostgreSQL casts its JSON columns to text).
macro_rules! worker_columns {
    ($json:literal) => {
        concat!(
            "id, name, host, version, executors",
            $json,
            ", tasks",
            $json,
            ", queues",
            $json,
            ", registered_at, last_seen, revoked_at, refused",
            $json
        )
    };
}
pub(super) use worker_columns;

/// A worker's row as a database holds it, before validation.
pub(super) struct RawWorker {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) host: String,
    pub(super) version: String,
    pub(super) executors: String,
    pub(super) tasks: String,
    pub(super) queues: String,
    pub(super) registered_at: i64,
    pub(super) last_seen: i64,
    pub(super) revoked_at: Option<i64>,
    pub(super) refused: String,
}

impl RawWorker {
    /// The worker the row holds; a column that does not parse is an
    /// [`Error::Database`](super::Error::Database) naming it.
    pub(super) fn into_record(self) -> super::Result<WorkerRecord> {
        let corrupt = |what: &str, detail: &dyn std::fmt::Display| {
            super::Error::Database(super::DatabaseError::new(
                super::DatabaseErrorKind::Corrupt,
                format!("worker {}: the stored {what} is invalid: {detail}", self.id),
            ))
        };
        let list = |what: &str, text: &str| -> super::Result<Vec<String>> {
            serde_json::from_str(text).map_err(|e| corrupt(what, &e))
        };
        let executors = list("executors", &self.executors)?
            .iter()
            .map(|name| name.parse::<ExecutorKind>().map_err(|e| corrupt("executors", &e)))
            .collect::<super::Result<_>>()?;
        let profile = WorkerProfile {
            host: self.host.clone(),
            version: self.version.clone(),
            executors,
            tasks: list("tasks", &self.tasks)?,
            queues: list("queues", &self.queues)?,
            refused: serde_json::from_str(&self.refused).map_err(|e| corrupt("refused tasks", &e))?,
        };
        Ok(WorkerRecord {
            id: self.id,
            name: self.name,
            profile,
            registered_at: Timestamp(self.registered_at),
            last_seen: Timestamp(self.last_seen),
            revoked_at: self.revoked_at.map(Timestamp),
        })
    }
}

/// A JSON array of `items`, as the list columns hold them.
pub(super) fn json_list<T: ToString>(items: &[T]) -> String {
    serde_json::Value::from(items.iter().map(ToString::to_string).collect::<Vec<_>>()).to_string()
}

/// The JSON the refused-tasks column holds.
pub(super) fn json_refused(refused: &[(String, String)]) -> String {
    serde_json::to_string(refused).expect("pairs of strings serialize")
}
