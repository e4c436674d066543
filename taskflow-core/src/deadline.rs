//! A [`Deadline`]: "until this long from now, or never", without a far-future
//! sentinel standing in for "never".

use std::time::Duration;

use tokio::time::Instant;

/// A point on the monotonic clock that may never come: a run without a
/// timeout, or a wait too long to add to the clock, has no deadline at all
/// rather than one a century away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Deadline(Option<Instant>);

impl Deadline {
    /// `wait` from now; never when that does not fit on the clock.
    pub(crate) fn after(wait: Duration) -> Deadline {
        Deadline(Instant::now().checked_add(wait))
    }

    /// `timeout` from now, or never without one.
    pub(crate) fn within(timeout: Option<Duration>) -> Deadline {
        timeout.map_or(Deadline(None), Deadline::after)
    }

    /// Whether it has come.
    pub(crate) fn has_passed(self) -> bool {
        self.0.is_some_and(|at| Instant::now() >= at)
    }

    /// Completes when it comes; never, for no deadline.
    pub(crate) async fn reached(self) {
        match self.0 {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_deadline_comes_after_its_wait() {
        let far = Deadline::after(Duration::from_secs(3600));
        assert!(!far.has_passed());
        let near = Deadline::after(Duration::from_millis(20));
        near.reached().await;
        assert!(near.has_passed());
    }

    #[tokio::test]
    async fn no_deadline_and_one_too_far_to_add_never_come() {
        for never in [Deadline::within(None), Deadline::after(Duration::MAX)] {
            assert!(!never.has_passed());
            let waited = tokio::time::timeout(Duration::from_millis(50), never.reached()).await;
            assert!(waited.is_err(), "{never:?} came");
        }
    }
}
