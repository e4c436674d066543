//! [`Event`]: something that happened to a run, as the WebSockets stream it.

use serde::{Deserialize, Serialize};

use crate::{LogLine, TaskRun};

/// Something that happened to a run, as the WebSockets stream it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Event {
    /// The run changed status (or was created).
    Status {
        /// The run as it is now.
        task: Box<TaskRun>,
    },
    /// The run logged a line.
    Log {
        /// The line, as stored.
        line: LogLine,
    },
    /// The run reported progress.
    Progress {
        /// The run.
        task_id: String,
        /// Units done.
        done: u64,
        /// Units in all.
        total: u64,
    },
    /// The run was deleted.
    Deleted {
        /// The run.
        task_id: String,
    },
    /// Events were lost (a slow consumer fell behind): re-read what you
    /// follow.
    Resync,
}

impl Event {
    /// The run this event is about (empty for [`Event::Resync`]).
    pub fn task_id(&self) -> &str {
        match self {
            Event::Status { task } => &task.task_id,
            Event::Log { line } => &line.task_id,
            Event::Progress { task_id, .. } | Event::Deleted { task_id } => task_id,
            Event::Resync => "",
        }
    }
}
