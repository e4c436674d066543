//! The database's clock, which leases go by: servers whose clocks disagree
//! still agree on when a lease ends.
//!
//! Callers give the store times by their own host's clock (a claim's and a
//! rescue's `now`, a heartbeat's `lease_until`). Each store measures how
//! far the database's clock (`clock_timestamp()`) is from its host's, at
//! connect and then every [`MEASURE_EVERY`], and moves lease times by that
//! offset: a lease is stamped and compared in database time, whichever
//! server claims, renews or rescues. Relative times are kept, so a test's
//! explicit `Timestamp(2_000)` means what it says on every server.
//!
//! A measurement keeps the sample with the shortest round trip of a few and
//! takes the database's reading as made halfway through it (NTP's
//! estimate). An offset within half that round trip is no offset, since
//! the sample cannot tell it from none: on one host both clocks are one and
//! the offset is exactly 0.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx_core::query_scalar::query_scalar;
use sqlx_postgres::{PgConnection, PgPool};

use super::rows::db;
use crate::run::Timestamp;
use crate::store::Result;

/// How often a store measures the offset again (a clock may drift or be
/// stepped while the server runs).
const MEASURE_EVERY: Duration = Duration::from_secs(60);
/// Samples per measurement; the one with the shortest round trip counts.
const SAMPLES: usize = 3;
/// An offset over this is logged as a warning: NTP keeps hosts within
/// milliseconds, so a second means a host's clock is not kept. Leases are
/// safe from it, but the times callers compare among themselves (a delayed
/// run's or a retry's `not_before`, the times shown) mix the clocks.
const WARN_OVER: Duration = Duration::from_secs(1);

/// The local clock of a store: the system's, or a test's.
pub(super) type LocalClock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// Turns local times into database times by the last measured offset.
#[derive(Clone)]
pub(super) struct DatabaseClock {
    local: LocalClock,
    /// How far the database's clock is ahead of the local one, in ms.
    offset_ms: Arc<AtomicI64>,
}

impl DatabaseClock {
    /// Measures the offset on `conn` (warning if it is large) and starts
    /// with it.
    pub(super) async fn measure(conn: &mut PgConnection, local: LocalClock) -> Result<DatabaseClock> {
        let offset = measure(conn, &local).await?;
        warn_if_large(offset, "at connect");
        Ok(DatabaseClock { local, offset_ms: Arc::new(AtomicI64::new(offset)) })
    }

    /// `at`, a time by the local clock, in the database's clock.
    pub(super) fn to_database(&self, at: Timestamp) -> Timestamp {
        Timestamp(at.0.saturating_add(self.offset_ms.load(Ordering::Relaxed)))
    }

    /// Measures the offset again every [`MEASURE_EVERY`], for as long as
    /// the task runs; a failed measurement keeps the last offset.
    pub(super) async fn follow(self, pool: PgPool) {
        loop {
            tokio::time::sleep(MEASURE_EVERY).await;
            let measured = async {
                let mut conn = pool.acquire().await.map_err(db("cannot measure the database's clock"))?;
                measure(&mut conn, &self.local).await
            };
            match measured.await {
                Ok(offset) => {
                    let before = self.offset_ms.swap(offset, Ordering::Relaxed);
                    if offset.abs_diff(before) > millis(WARN_OVER) {
                        warn_if_large(offset, "after a change of more than a second");
                    }
                }
                Err(error) => tracing::debug!(%error, "cannot measure the database's clock; keeping the last offset"),
            }
        }
    }
}

/// The database's clock minus the local one, in ms: 0 within the
/// measurement's uncertainty.
async fn measure(conn: &mut PgConnection, local: &LocalClock) -> Result<i64> {
    let mut best: Option<(i64, i64)> = None;
    for _ in 0..SAMPLES {
        let sent = micros(local());
        let database: i64 = query_scalar("SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint")
            .fetch_one(&mut *conn)
            .await
            .map_err(db("cannot read the database's clock"))?;
        let received = micros(local());
        let round_trip = received.saturating_sub(sent).max(0);
        let offset = database.saturating_sub(sent.saturating_add(round_trip / 2));
        if best.is_none_or(|(shortest, _)| round_trip < shortest) {
            best = Some((round_trip, offset));
        }
    }
    let (round_trip, offset) = best.unwrap_or_default();
    // Within half the round trip the reading may have been taken at any
    // point of it: no offset can be told.
    if offset.abs() <= round_trip / 2 + 1 {
        return Ok(0);
    }
    Ok(offset.saturating_add(500).div_euclid(1000))
}

fn warn_if_large(offset_ms: i64, when: &str) {
    if offset_ms.unsigned_abs() > millis(WARN_OVER) {
        let (by, side) =
            (Duration::from_millis(offset_ms.unsigned_abs()), if offset_ms > 0 { "behind" } else { "ahead of" });
        tracing::warn!(
            offset_ms,
            "this host's clock is {by:?} {side} the database's ({when}); leases go by the database's clock, but \
             delays, retries and the times shown mix the hosts' clocks: keep the clocks synchronized (NTP)"
        );
    }
}

fn micros(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |since| i64::try_from(since.as_micros()).unwrap_or(i64::MAX))
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
