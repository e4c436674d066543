//! Claims and heartbeats: runs taken `FOR UPDATE SKIP LOCKED` under the
//! tasks' concurrency limits, and leases renewed in one statement.

use std::collections::{BTreeMap, HashSet};

use sqlx_core::row::Row;
use sqlx_postgres::PgPool;

use super::changes::{announced, notify};
use super::clock::DatabaseClock;
use super::rows::{db, query, read_run};
use super::writes::{begin, commit, save};
use super::{RUN_COLUMNS, TASK_LIMIT_LOCKS};
use crate::run::{Run, RunId, RunStatus, Timestamp};
use crate::store::row::progress_columns;
use crate::store::{ClaimRequest, Renewal, Result, apply};

/// Claims runs for `request`; their leases end `request.lease` after
/// `request.now` in the database's clock (`clock`).
pub(super) async fn claim(
    pool: &PgPool,
    origin: &str,
    request: &ClaimRequest,
    clock: &DatabaseClock,
) -> Result<Vec<Run>> {
    let executors: Vec<&str> = apply::distinct(&request.executors).into_iter().map(|e| e.as_str()).collect();
    if executors.is_empty() || request.titles.is_empty() || request.limit == 0 {
        return Ok(Vec::new());
    }
    let mut tx = begin(pool).await?;

    // Room left under each task's concurrency limit (the smallest declared
    // by this claimer or another live one). Claims of limited tasks take a
    // lock per task, so the count sees every claim committed by any server
    // before; full tasks are skipped in the query, the others are capped
    // while picking.
    let now = clock.to_database(request.now);
    let others = declare_limits(&mut tx, request, now).await?;
    let limits = apply::limits(request, &others);
    let mut running = BTreeMap::new();
    if !limits.is_empty() {
        let titles: Vec<&str> = limits.keys().copied().collect();
        // In the order of the lock keys, so claimers cannot deadlock.
        query(
            "SELECT pg_advisory_xact_lock($1, key)              FROM (SELECT DISTINCT hashtext(title) AS key FROM unnest($2::text[]) AS title ORDER BY key) AS keys",
        )
        .bind(TASK_LIMIT_LOCKS)
        .bind(&titles)
        .execute(&mut *tx)
        .await
        .map_err(db("cannot lock the concurrency limits of tasks"))?;
        running = query(
            "SELECT task_title, count(*) FROM taskflow_runs \
             WHERE status = 'running' AND task_title = ANY($1) GROUP BY task_title",
        )
        .bind(&titles)
        .fetch_all(&mut *tx)
        .await
        .map_err(db("cannot count running runs of a task"))?
        .iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        .collect::<Result<_, sqlx_core::Error>>()
        .map_err(db("cannot count running runs of a task"))?;
    }
    let mut room = apply::room(limits, &running, request);
    let full = apply::full(&room);
    // Look a little further when limited tasks may have to be passed over.
    let window = apply::window(request.limit, &room);
    let sql = claim_sql();
    let rows = query(&sql)
        .bind(request.now.0)
        .bind(&executors)
        .bind(&full)
        .bind(i64::from(window))
        .bind(&request.titles)
        .fetch_all(&mut *tx)
        .await
        .map_err(db("cannot select runs to claim"))?;
    let mut runs = apply::pick(rows.iter().map(read_run), request.limit, &mut room)?;

    let lease_until = now.plus(request.lease);
    for run in &mut runs {
        apply::claim(run, &request.worker_id, lease_until, request.now)?;
    }
    save(&mut tx, &runs).await?;
    notify(&mut tx, origin, &announced(&runs)).await?;
    // The rows looked at but not claimed are unlocked here too.
    commit(tx).await?;
    Ok(runs)
}

/// Records the concurrency limits `request` declares as its claimer's
/// (replacing its earlier ones; lapsed ones go at a prune) and returns the
/// smallest live limit other claimers declare per task, in one statement.
/// Only the claimer's own rows are written, so claimers never wait on each
/// other here.
async fn declare_limits(
    tx: &mut sqlx_postgres::PgConnection,
    request: &ClaimRequest,
    now: Timestamp,
) -> Result<BTreeMap<String, u32>> {
    let (titles, limits): (Vec<&str>, Vec<i64>) =
        request.task_limits.iter().map(|(title, limit)| (title.as_str(), i64::from(*limit))).unzip();
    // The statements of a WITH see one snapshot: the SELECT reads the
    // others' rows only, and this claimer's come from the request.
    let rows = query(
        "WITH gone AS (DELETE FROM taskflow_task_limits WHERE worker_id = $1 AND NOT task_title = ANY($2)),          kept AS (INSERT INTO taskflow_task_limits (worker_id, task_title, max_running, expires_at)                   SELECT $1, title, max_running, $4 FROM unnest($2::text[], $3::bigint[]) AS d (title, max_running)                   ON CONFLICT (worker_id, task_title)                   DO UPDATE SET max_running = EXCLUDED.max_running, expires_at = EXCLUDED.expires_at)          SELECT task_title, MIN(max_running) FROM taskflow_task_limits          WHERE worker_id <> $1 AND expires_at > $5 AND task_title = ANY($6) GROUP BY task_title",
    )
    .bind(&request.worker_id)
    .bind(&titles)
    .bind(&limits)
    .bind(apply::declarations_expire(now, request.lease).0)
    .bind(now.0)
    .bind(&request.titles)
    .fetch_all(&mut *tx)
    .await
    .map_err(db("cannot record the concurrency limits of tasks"))?;
    rows.iter()
        .map(|row| {
            let limit: i64 = row.try_get(1)?;
            Ok((row.try_get(0)?, u32::try_from(limit).unwrap_or(u32::MAX)))
        })
        .collect::<Result<_, sqlx_core::Error>>()
        .map_err(db("cannot read the concurrency limits of tasks"))
}

/// The candidates of a claim: `$1` now, `$2` the executors, `$3` the full
/// tasks, `$4` how many, `$5` the tasks of the claiming binary.
pub(super) fn claim_sql() -> String {
    format!(
        "SELECT {RUN_COLUMNS} FROM taskflow_runs \
         WHERE status = 'pending' AND not_before <= $1 AND executor = ANY($2) AND task_title = ANY($5) \
         AND NOT task_title = ANY($3) \
         ORDER BY taskflow_runs.priority DESC, not_before, taskflow_runs.id LIMIT $4 FOR UPDATE SKIP LOCKED"
    )
}

/// Renews leases until `lease_until`, in the database's clock, storing the
/// progress the renewals carry. Not announced as a change: no status moves.
pub(super) async fn heartbeat(
    pool: &PgPool,
    worker_id: &str,
    runs: &[Renewal],
    lease_until: Timestamp,
) -> Result<Vec<RunId>> {
    if runs.is_empty() {
        return Ok(Vec::new());
    }
    // One statement, outside an explicit transaction: one round trip, so a
    // slow network (300 ms a round trip) still renews well inside a lease.
    // The runs go in id order, the order every multi-run lock is taken in.
    let mut sorted: Vec<(uuid::Uuid, i64, Option<i64>, Option<i64>)> = runs
        .iter()
        .map(|r| {
            let (done, total) = progress_columns(r.progress);
            (r.id.as_uuid(), i64::from(r.attempt), done, total)
        })
        .collect();
    sorted.sort_unstable();
    let mut columns = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (id, attempt, done, total) in sorted {
        columns.0.push(id);
        columns.1.push(attempt);
        columns.2.push(done);
        columns.3.push(total);
    }
    let (ids, attempts, done, total) = columns;
    // New progress replaces the stored one; none keeps it.
    let renewed: Vec<(uuid::Uuid, i64)> = query(
        "UPDATE taskflow_runs AS r SET lease_until = $1, \
         progress_done = coalesce(h.done, r.progress_done), progress_total = coalesce(h.total, r.progress_total) \
         FROM unnest($2::uuid[], $3::bigint[], $6::bigint[], $7::bigint[]) AS h (id, attempt, done, total) \
         WHERE r.id = h.id AND r.id = ANY($2) AND r.attempt = h.attempt AND r.status = $5 AND r.worker_id = $4 \
         RETURNING r.id, r.attempt",
    )
    .bind(lease_until.0)
    .bind(&ids)
    .bind(&attempts)
    .bind(worker_id)
    // A parameter, not a constant: see `group_commit::write_changes`.
    .bind(RunStatus::Running.as_str())
    .bind(&done)
    .bind(&total)
    .fetch_all(pool)
    .await
    .map_err(db("cannot renew leases"))?
    .iter()
    .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
    .collect::<Result<_, sqlx_core::Error>>()
    .map_err(db("cannot renew leases"))?;
    let renewed: HashSet<(uuid::Uuid, i64)> = renewed.into_iter().collect();
    Ok(runs.iter().filter(|r| !renewed.contains(&(r.id.as_uuid(), i64::from(r.attempt)))).map(|r| r.id).collect())
}
