//! [`RunEvent`]: what happened to a run, for live views (the UI, the
//! WebSocket, `Client::wait`). Published on a broadcast channel by the
//! worker and the server's maintenance; [`StatusOrder`] puts a subscriber's
//! status events back in each run's order.

use std::collections::{HashMap, VecDeque};

use crate::run::{Run, RunId, RunStatus};
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

/// Drops status events that arrive after a later one of the same run.
///
/// Events are published by different tasks after their commits — a
/// submit's `pending` can reach the channel after the engine's `running`
/// of the same run — so the order on the channel is not the order in the
/// store. Within the state machine a run only moves forward in
/// `(attempt, pending < running < final)`, so an event below the last one
/// seen is stale. (A run released at shutdown goes back to `pending` in the
/// same attempt; that one event is dropped, and the next claim is shown.)
/// Remembers the last 65,536 runs.
#[derive(Debug, Default)]
pub struct StatusOrder {
    last: HashMap<RunId, (u32, u8)>,
    seen: VecDeque<RunId>,
}

/// How many runs [`StatusOrder`] remembers.
const ORDER_MEMORY: usize = 65_536;

impl StatusOrder {
    /// Whether `event` is news: not a status older than one already seen.
    pub fn is_current(&mut self, event: &RunEvent) -> bool {
        let RunEvent::Status(run) = event else { return true };
        let rank = match run.status {
            RunStatus::Pending => 0,
            RunStatus::Running => 1,
            RunStatus::Completed | RunStatus::Failed | RunStatus::Cancelled => 2,
        };
        let key = (run.attempt, rank);
        match self.last.get_mut(&run.id) {
            Some(last) if key < *last => false,
            Some(last) => {
                *last = key;
                true
            }
            None => {
                if self.seen.len() >= ORDER_MEMORY {
                    if let Some(old) = self.seen.pop_front() {
                        self.last.remove(&old);
                    }
                }
                self.seen.push_back(run.id);
                self.last.insert(run.id, key);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::{ExecutorKind, Timestamp};

    fn event(id: RunId, status: RunStatus, attempt: u32) -> RunEvent {
        RunEvent::Status(Box::new(Run {
            id,
            task_title: "t".into(),
            payload: serde_json::json!({}),
            status,
            attempt,
            max_attempts: 3,
            executor: ExecutorKind::Thread,
            priority: 0,
            not_before: Timestamp(0),
            timeout_ms: None,
            retry_delay_ms: 0,
            created_at: Timestamp(0),
            started_at: None,
            finished_at: None,
            result: None,
            error: None,
            worker_id: None,
            lease_until: None,
            idempotency_key: None,
            attempts: Vec::new(),
            progress: None,
        }))
    }

    #[test]
    fn late_status_events_are_dropped() {
        let mut order = StatusOrder::default();
        let id = RunId::new();
        assert!(order.is_current(&event(id, RunStatus::Running, 1)));
        assert!(!order.is_current(&event(id, RunStatus::Pending, 1)), "a pending after running is stale");
        assert!(order.is_current(&event(id, RunStatus::Failed, 1)));
        assert!(order.is_current(&event(id, RunStatus::Pending, 2)), "a retry moves forward");
        assert!(!order.is_current(&event(id, RunStatus::Completed, 1)));
        assert!(order.is_current(&event(RunId::new(), RunStatus::Pending, 1)), "another run");
    }
}
