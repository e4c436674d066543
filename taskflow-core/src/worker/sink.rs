//! The [`RunSink`] of a worker's runs: log lines go to the worker's log
//! writer (within the attempt's byte budget), progress to subscribers and,
//! with the next lease renewal, to the store.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize};

use tokio::sync::{Notify, broadcast, mpsc};

use crate::events::RunEvent;
use crate::run::RunId;
use crate::task::context::{LogLine, Progress, RunSink};

/// Sends a run's log lines to the worker's log writer.
pub(super) struct WorkerSink {
    pub(super) logs: mpsc::UnboundedSender<(RunId, LogLine)>,
    pub(super) events: broadcast::Sender<RunEvent>,
    /// Bytes of log text this attempt may still store.
    pub(super) budget: AtomicUsize,
    /// Whether the truncation warning was sent.
    pub(super) truncated: AtomicBool,
    /// The attempt's latest progress, for the store.
    pub(super) progress: Arc<ProgressCell>,
    /// Wakes the heartbeat, which stores progress with the leases.
    pub(super) progressed: Arc<Notify>,
}

/// An attempt's latest progress, and the one the store has.
#[derive(Debug, Default)]
pub(super) struct ProgressCell {
    /// (latest reported, latest stored).
    state: Mutex<(Option<Progress>, Option<Progress>)>,
}

impl ProgressCell {
    fn set(&self, progress: Progress) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).0 = Some(progress);
    }

    /// The latest progress, if the store does not have it yet.
    pub(super) fn unsent(&self) -> Option<Progress> {
        let (latest, stored) = *self.state.lock().unwrap_or_else(|e| e.into_inner());
        latest.filter(|_| latest != stored)
    }

    /// The store has `progress` now (an [`unsent`](Self::unsent) value).
    pub(super) fn stored(&self, progress: Progress) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).1 = Some(progress);
    }
}

impl RunSink for WorkerSink {
    fn log(&self, run_id: &str, line: LogLine) {
        use std::sync::atomic::Ordering;
        let Ok(id) = run_id.parse() else { return };
        let cost = line.message.len().max(1);
        let fits =
            self.budget.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| left.checked_sub(cost)).is_ok();
        if fits {
            let _ = self.logs.send((id, line));
        } else if !self.truncated.swap(true, Ordering::Relaxed) {
            let warning = LogLine {
                at: line.at,
                level: crate::log::Level::Warn,
                message: "[taskflow] log truncated: this attempt's log reached its size limit (max_log_bytes); \
                          later lines are dropped"
                    .to_owned(),
            };
            let _ = self.logs.send((id, warning));
        }
    }

    /// Published to subscribers at once; stored with the next renewal (at
    /// most about once a second), so a task may report as often as it likes.
    fn progress(&self, run_id: &str, progress: Progress) {
        self.progress.set(progress);
        self.progressed.notify_one();
        if let Ok(run_id) = run_id.parse() {
            let _ = self.events.send(RunEvent::Progress { run_id, progress });
        }
    }
}
