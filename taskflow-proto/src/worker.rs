//! The messages between a remote worker and the server, versioned: a
//! worker's first message is always [`WorkerMessage::Hello`] with the
//! protocol version it speaks, and the server answers
//! [`ServerMessage::Welcome`] or refuses it by name before anything else is
//! exchanged, so a worker and a server of different releases fail at once
//! with a message that says which versions they speak, never half-way
//! through a run. The remote-worker messages (claims, offers, heartbeats,
//! reports, logs) are added here as variants of these enums.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ExecutorKind;

/// The version of the worker protocol this crate speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// What a worker sends to the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum WorkerMessage {
    /// The first message: who the worker is and what it speaks.
    Hello {
        /// The protocol version the worker speaks ([`PROTOCOL_VERSION`]).
        version: u32,
        /// The worker's name, for people (`build-box`).
        name: String,
        /// The executors it can run.
        executors: Vec<ExecutorKind>,
    },
}

/// What the server sends to a worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ServerMessage {
    /// The answer to a hello the server accepts.
    Welcome {
        /// The protocol version the server speaks.
        version: u32,
    },
    /// The answer to a hello the server refuses; the connection ends.
    Refused {
        /// Why, in a sentence that says what to change.
        reason: String,
    },
}

/// A worker speaking another protocol version than the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionMismatch {
    /// The version the worker speaks.
    pub worker: u32,
    /// The version the server speaks.
    pub server: u32,
}

impl fmt::Display for VersionMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the worker speaks protocol version {} and the server version {}: run a worker of the server's release",
            self.worker, self.server
        )
    }
}

impl std::error::Error for VersionMismatch {}

/// The server's answer to a worker's hello: welcome when it speaks this
/// crate's [`PROTOCOL_VERSION`], refused otherwise.
pub fn answer_hello(hello: &WorkerMessage) -> Result<ServerMessage, VersionMismatch> {
    let WorkerMessage::Hello { version, .. } = hello;
    if *version == PROTOCOL_VERSION {
        Ok(ServerMessage::Welcome { version: PROTOCOL_VERSION })
    } else {
        Err(VersionMismatch { worker: *version, server: PROTOCOL_VERSION })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(version: u32) -> WorkerMessage {
        WorkerMessage::Hello { version, name: "build-box".into(), executors: vec![ExecutorKind::Thread] }
    }

    #[test]
    fn a_hello_is_tagged_json() {
        let json = serde_json::to_value(hello(1)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"type": "hello", "version": 1, "name": "build-box", "executors": ["thread"]})
        );
        assert_eq!(serde_json::from_value::<WorkerMessage>(json).unwrap(), hello(1));
    }

    #[test]
    fn the_server_welcomes_its_own_version_and_names_both_otherwise() {
        assert_eq!(
            answer_hello(&hello(PROTOCOL_VERSION)).unwrap(),
            ServerMessage::Welcome { version: PROTOCOL_VERSION }
        );
        let mismatch = answer_hello(&hello(PROTOCOL_VERSION + 1)).unwrap_err();
        assert_eq!(mismatch, VersionMismatch { worker: PROTOCOL_VERSION + 1, server: PROTOCOL_VERSION });
        assert!(mismatch.to_string().contains("version 2 and the server version 1"), "{mismatch}");
    }
}
