//! Slots taken ahead for runs being submitted with a claim: a local submit
//! that can start at once claims its run itself instead of waiting for the
//! claim loop.

use std::sync::atomic::Ordering;

use super::Worker;
use crate::run::{self, Run};
use crate::store::SubmitClaim;

/// A slot of a [`Worker`] taken for a run being submitted with a claim
/// ([`Worker::reserve`]); dropping it frees the slot.
pub(crate) struct Reservation {
    pub(super) worker: Worker,
    /// When the slot was taken: the claim's lease counts from no later.
    pub(super) asked: tokio::time::Instant,
}

impl Reservation {
    /// The claim the submit asks the store for.
    pub(crate) fn claim(&self) -> SubmitClaim {
        let config = &self.worker.inner.config;
        SubmitClaim { worker_id: config.worker_id.clone(), lease: config.lease }
    }

    /// Whether `run` was claimed for this reservation's worker.
    pub(crate) fn holds(&self, run: &Run) -> bool {
        run.status == run::RunStatus::Running
            && run.worker_id.as_deref() == Some(self.worker.inner.config.worker_id.as_str())
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.worker.inner.reserved.fetch_sub(1, Ordering::SeqCst);
    }
}

impl std::fmt::Debug for Reservation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reservation").finish_non_exhaustive()
    }
}
