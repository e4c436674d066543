//! The rate limit on registrations: at most [`PER_WINDOW`] a minute from one
//! client address, so that guessing provision tokens is slow and a flood of
//! registrations cannot fill the store. A fixed window per address, by hand:
//! a map and a counter, where a rate-limiting crate would bring its own
//! clock and concurrent map for this one route.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Registrations one address may try per window.
pub(crate) const PER_WINDOW: u32 = 10;
/// The window.
pub(crate) const WINDOW: Duration = Duration::from_secs(60);
/// Addresses tracked before the expired ones are dropped.
const TRACKED: usize = 10_000;

/// Counts each address's registrations in its current window.
#[derive(Debug, Default)]
pub(crate) struct Limiter {
    seen: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl Limiter {
    /// Admits one more registration from `ip` (none known: one shared
    /// address) at `now`, or says how long until its window ends.
    pub(crate) fn admit(&self, ip: Option<IpAddr>, now: Instant) -> Result<(), Duration> {
        let ip = ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() >= TRACKED {
            seen.retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
        }
        let (start, count) = seen.entry(ip).or_insert((now, 0));
        if now.duration_since(*start) >= WINDOW {
            (*start, *count) = (now, 0);
        }
        if *count >= PER_WINDOW {
            return Err(WINDOW.saturating_sub(now.duration_since(*start)));
        }
        *count += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_gets_its_share_of_a_window_and_then_waits() {
        let limiter = Limiter::default();
        let (a, b) = (Some("127.0.0.2".parse().unwrap()), Some("127.0.0.3".parse().unwrap()));
        let start = Instant::now();
        for _ in 0..PER_WINDOW {
            assert_eq!(limiter.admit(a, start), Ok(()));
        }
        let later = start + Duration::from_secs(20);
        assert_eq!(limiter.admit(a, later), Err(Duration::from_secs(40)), "over: wait out the window");
        assert_eq!(limiter.admit(b, later), Ok(()), "another address has its own");
        assert_eq!(limiter.admit(a, start + WINDOW), Ok(()), "a new window");
    }
}
