//! Background loops that outlive a panic: the engine's claim, heartbeat,
//! log-writer, rescue and change-follower loops have no caller to report
//! to, so one that died would stop claiming or renewing leases in silence
//! while `/health` still answered "ok". A panicked loop is logged and
//! started again.

use std::time::Duration;

/// How long a panicked loop waits before it starts again: a panic that
/// repeats at once does not spin.
const RESTART_DELAY: Duration = Duration::from_millis(100);

/// Spawns the loop `start` makes, and makes it again each time it panics.
/// It stays ended once it returns (its shutdown) or the runtime stops.
pub(crate) fn supervise<F, Fut>(name: &'static str, start: F)
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        loop {
            match tokio::spawn(start()).await {
                Ok(()) => return,
                Err(error) if error.is_panic() => {
                    let panic = error.into_panic();
                    let message = panic
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_owned())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "a panic with a non-string payload".to_owned());
                    tracing::error!("taskflow engine: the {name} loop panicked ({message}); starting it again");
                    tokio::time::sleep(RESTART_DELAY).await;
                }
                // Cancelled: the runtime is shutting down.
                Err(_) => return,
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn a_panicked_loop_starts_again_and_a_returned_one_does_not() {
        let starts = Arc::new(AtomicUsize::new(0));
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let done_tx = std::sync::Mutex::new(Some(done_tx));
        let counted = starts.clone();
        supervise("test", move || {
            let n = counted.fetch_add(1, Ordering::SeqCst) + 1;
            let done = if n == 3 { done_tx.lock().unwrap().take() } else { None };
            async move {
                assert!(n >= 3, "start {n} panics");
                let _ = done.map(|done| done.send(()));
            }
        });
        done_rx.await.unwrap();
        tokio::time::sleep(RESTART_DELAY * 3).await;
        assert_eq!(starts.load(Ordering::SeqCst), 3);
    }
}
