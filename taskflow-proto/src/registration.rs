//! A remote worker's registration (`POST /api/v1/polling/register`) and
//! the workers as `GET /api/v1/workers` lists them.

use serde::{Deserialize, Serialize};

use crate::ExecutorKind;

/// What a worker sends to register: the one-time provision token an admin
/// gave it, and what it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// The provision token (`tfp_…`) from `worker-token create`: good for
    /// one registration, until it expires.
    pub provision_token: String,
    /// The protocol version the worker speaks (this release: 1).
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 1))]
    pub protocol_version: u32,
    /// The worker's host name.
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 1, max_length = 255, pattern = r"^[^\u0000-\u001F\u007F-\u009F]+$")
    )]
    pub host: String,
    /// The worker's version of the app.
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 1, max_length = 255, pattern = r"^[^\u0000-\u001F\u007F-\u009F]+$")
    )]
    pub version: String,
    /// The executors it runs runs on.
    #[cfg_attr(feature = "openapi", schema(min_items = 1, max_items = 10_000))]
    pub executors: Vec<ExecutorKind>,
    /// The tasks it has, each with the digest of its argument schema.
    #[cfg_attr(feature = "openapi", schema(max_items = 10_000))]
    pub tasks: Vec<TaskDigest>,
    /// The queues it takes runs from (`default` when none are given).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_items = 10_000))]
    pub queues: Vec<QueueName>,
}

/// A queue's name: 1 to 64 letters, digits, `-`, `_` or `.`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct QueueName(pub String);

// By hand: utoipa's derive takes no bounds on a newtype's field.
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for QueueName {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .max_length(Some(64))
            .pattern(Some(r"^[A-Za-z0-9_.-]+$"))
            .description(Some("A queue's name: 1 to 64 letters, digits, `-`, `_` or `.`."))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for QueueName {}

/// A task a worker has: its title and the SHA-256 (hex) of its argument
/// schema, so that a task whose arguments differ between the worker's build
/// and the server's is never handed to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaskDigest {
    /// The task's title.
    pub title: String,
    /// The SHA-256, in hex, of its argument schema as canonical JSON.
    pub schema_digest: String,
}

/// The server's answer to a registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Registered {
    /// The worker's id: the `worker_id` of the runs it will hold.
    pub worker_id: String,
    /// Its name, from the provision token.
    pub name: String,
    /// Its token (`tfw_…`) for the polling routes, shown this once: keep it
    /// (the worker keeps it in its data directory, mode 0600).
    pub worker_token: String,
    /// The tasks it will be given runs of.
    pub accepted: Vec<String>,
    /// The tasks it will not, and why.
    pub refused: Vec<RefusedTask>,
}

/// A task of a worker's that the server will not hand it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RefusedTask {
    /// The task's title.
    pub title: String,
    /// Why, in a sentence that says what to change.
    pub reason: String,
}

/// A registered worker, as `GET /api/v1/workers` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WorkerInfo {
    /// Its id.
    pub worker_id: String,
    /// Its name.
    pub name: String,
    /// Its host name, as it reported it.
    pub host: String,
    /// Its version of the app.
    pub version: String,
    /// The executors it runs.
    pub executors: Vec<String>,
    /// The tasks it is given runs of.
    pub tasks: Vec<String>,
    /// The queues it takes runs from.
    pub queues: Vec<String>,
    /// Its tasks the server will not give it runs of, and why.
    #[serde(default)]
    pub refused: Vec<RefusedTask>,
    /// When it registered (RFC 3339, UTC).
    pub registered_at: String,
    /// When it was last heard from.
    pub last_seen: String,
    /// `active`, `lost` (not heard from within two leases) or `revoked`.
    pub state: WorkerState,
}

/// How a worker is, as far as the server knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum WorkerState {
    /// Heard from lately.
    Active,
    /// Not heard from within two leases: its runs go back to the queue as
    /// their leases end.
    Lost,
    /// Revoked by an admin: its token is refused.
    Revoked,
}
