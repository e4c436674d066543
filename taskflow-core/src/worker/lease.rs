//! The worker's own clock on each attempt's lease: a monotonic deadline,
//! moved on by every renewal the store confirmed, and the attempt is
//! stopped when it passes. The store's lease is what other workers go by;
//! this deadline ends a little before it, so an attempt whose lease could
//! not be renewed (a partition, a hung connection, a paused process) stops
//! before the rescuer can hand its run to another worker.
//!
//! A renewal counts from the moment it was *asked* for, not answered: the
//! store stamps the lease no earlier than that, so the local deadline never
//! outlives the stored one, whatever the round trip took.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// One attempt's lease as this worker knows it.
#[derive(Debug)]
pub(super) struct Lease {
    /// When this worker stops trusting the lease.
    deadline: Mutex<Instant>,
    /// How long a renewal is trusted for.
    trusted: Duration,
    /// The store said this worker no longer holds the attempt.
    lost: AtomicBool,
}

impl Lease {
    /// A lease of `lease` granted by a claim asked for at `asked`.
    pub(super) fn granted(asked: Instant, lease: Duration) -> Lease {
        let trusted = trusted(lease);
        Lease { deadline: Mutex::new(asked + trusted), trusted, lost: AtomicBool::new(false) }
    }

    /// A renewal asked for at `asked` was stored.
    pub(super) fn renewed(&self, asked: Instant) {
        let mut deadline = self.deadline.lock().unwrap_or_else(|e| e.into_inner());
        *deadline = (*deadline).max(asked + self.trusted);
    }

    /// The store answered that the attempt is no longer this worker's.
    pub(super) fn lose(&self) {
        self.lost.store(true, Ordering::SeqCst);
    }

    pub(super) fn is_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    fn deadline(&self) -> Instant {
        *self.deadline.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the deadline has passed: the attempt is no longer known to
    /// be held.
    pub(super) fn has_expired(&self) -> bool {
        self.deadline() <= Instant::now()
    }

    /// Whether this worker may still act for the attempt: not lost, not
    /// expired.
    pub(super) fn is_held(&self) -> bool {
        !self.is_lost() && !self.has_expired()
    }

    /// Completes when the deadline passes without a renewal.
    pub(super) async fn expired(&self) {
        loop {
            tokio::time::sleep_until(self.deadline()).await;
            if self.has_expired() {
                return;
            }
        }
    }
}

/// How long after it was asked for a lease of `lease` is trusted: a tenth
/// less, for the time an attempt takes to stop and for the rescuer's own
/// clock running a little ahead.
fn trusted(lease: Duration) -> Duration {
    lease - lease / 10
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_lease_is_trusted_a_tenth_less_and_renewals_move_it_on() {
        let asked = Instant::now();
        let lease = Lease::granted(asked, Duration::from_millis(200));
        assert_eq!(lease.deadline(), asked + Duration::from_millis(180));
        lease.renewed(asked + Duration::from_millis(100));
        assert_eq!(lease.deadline(), asked + Duration::from_millis(280));
        // An older renewal answered late moves nothing back.
        lease.renewed(asked);
        assert_eq!(lease.deadline(), asked + Duration::from_millis(280));
        assert!(lease.is_held());
        lease.expired().await;
        assert!(Instant::now() >= asked + Duration::from_millis(280));
        assert!(lease.has_expired() && !lease.is_held());
    }

    #[test]
    fn a_lost_lease_is_not_held() {
        let lease = Lease::granted(Instant::now(), Duration::from_secs(60));
        assert!(lease.is_held());
        lease.lose();
        assert!(lease.is_lost() && !lease.is_held());
    }
}
