//! The [`RunSink`] of a worker's runs: log lines go to the worker's log
//! writer (within the attempt's byte budget), progress to subscribers.

use std::sync::atomic::{AtomicBool, AtomicUsize};

use tokio::sync::{broadcast, mpsc};

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

    /// Progress is live-only: published to subscribers, not stored.
    fn progress(&self, run_id: &str, progress: Progress) {
        if let Ok(run_id) = run_id.parse() {
            let _ = self.events.send(RunEvent::Progress { run_id, progress });
        }
    }
}
