//! [`RunEvent`]: what happened to a run, for live views (the UI, the
//! WebSocket, `Client::wait`). Published on a broadcast channel by the
//! worker and the server's maintenance.

use crate::run::{Run, RunId};
use crate::store::StoredLogLine;
use crate::task::context::Progress;

/// Something that happened to a run, for live views.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum RunEvent {
    /// The run changed status (or was created); the run as it is now.
    Status(Box<Run>),
    /// The run logged a line.
    Log(StoredLogLine),
    /// The run reported progress.
    Progress {
        /// The run.
        run_id: RunId,
        /// How far it has come.
        progress: Progress,
    },
    /// The run was deleted.
    Deleted(RunId),
}

impl RunEvent {
    /// The run the event is about.
    pub fn run_id(&self) -> RunId {
        match self {
            RunEvent::Status(run) => run.id,
            RunEvent::Log(line) => line.run_id,
            RunEvent::Progress { run_id, .. } => *run_id,
            RunEvent::Deleted(id) => *id,
        }
    }
}
