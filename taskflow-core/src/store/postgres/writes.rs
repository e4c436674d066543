//! The other writes, each one transaction: submit, cancel, delete, rescue,
//! prune and log lines, and the update every status change makes.

use std::collections::BTreeMap;

use serde_json::Value;
use sqlx_core::query::Query;
use sqlx_core::query_scalar::query_scalar;
use sqlx_core::row::Row;
use sqlx_postgres::{PgArguments, PgPool, PgTransaction, Postgres};

use super::changes::{announced, notify};
use super::reads::load;
use super::rows::{db, query, read_run, storable};
use super::{PRUNE_BATCH, RESCUE_BATCH, RUN_COLUMNS, SUBMIT_ROUNDS};
use crate::log::Level;
use crate::run::{Run, RunId, Timestamp};
use crate::store::row::{attempts_json, corrupt, level_name, parse_status, progress_columns, to_i64};
use crate::store::{
    DatabaseError, DatabaseErrorKind, Error, NewRun, Result, StoredLogLine, Submitted, apply, is_active,
};

pub(super) async fn begin(pool: &PgPool) -> Result<PgTransaction<'static>> {
    pool.begin().await.map_err(db("cannot begin a transaction"))
}

pub(super) async fn commit(tx: PgTransaction<'_>) -> Result<()> {
    tx.commit().await.map_err(db("cannot commit"))
}

pub(super) async fn submit(pool: &PgPool, origin: &str, new: NewRun, now: Timestamp) -> Result<Submitted> {
    let unique_key = new.unique_key().into_bytes();
    let mut tx = begin(pool).await?;
    for _ in 0..SUBMIT_ROUNDS {
        if let Some(key) = &new.idempotency_key {
            let sql =
                format!("SELECT {RUN_COLUMNS}, unique_key = sha256($2) FROM taskflow_runs WHERE idempotency_key = $1");
            let row = query(&sql)
                .bind(key)
                .bind(&unique_key)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db("cannot look up an idempotency key"))?;
            if let Some(row) = row {
                let run = read_run(&row)?;
                let same: bool = row.try_get(23).map_err(db("cannot look up an idempotency key"))?;
                if same {
                    return Ok(Submitted { run, created: false });
                }
                return Err(Error::IdempotencyConflict { key: key.clone(), existing: run.id });
            }
        }
        if new.unique {
            let sql = format!(
                "SELECT {RUN_COLUMNS} FROM taskflow_runs \
                 WHERE unique_key = sha256($1) AND status IN ('pending', 'running') ORDER BY taskflow_runs.id LIMIT 1"
            );
            let row = query(&sql)
                .bind(&unique_key)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db("cannot look up an active run"))?;
            if let Some(row) = row {
                return Ok(Submitted { run: read_run(&row)?, created: false });
            }
        }

        let run = apply::create(&new, now)?;
        // Nothing is inserted if an equal submit committed meanwhile (an
        // active de-duplicated run, or the idempotency key); the next round
        // finds its run.
        let inserted = query(
            "INSERT INTO taskflow_runs (id, task_title, payload, status, attempt, max_attempts, executor, priority, \
             not_before, timeout_ms, retry_delay_ms, created_at, idempotency_key, unique_key, dedup) \
             VALUES ($1, $2, $3::json, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, sha256($14), $15) \
             ON CONFLICT DO NOTHING",
        )
        .bind(run.id.as_uuid())
        .bind(&run.task_title)
        .bind(run.payload.to_string())
        .bind(run.status.as_str())
        .bind(i64::from(run.attempt))
        .bind(i64::from(run.max_attempts))
        .bind(run.executor.as_str())
        .bind(run.priority)
        .bind(run.not_before.0)
        .bind(run.timeout_ms.map(to_i64))
        .bind(to_i64(run.retry_delay_ms))
        .bind(run.created_at.0)
        .bind(&run.idempotency_key)
        .bind(&unique_key)
        .bind(new.unique)
        .execute(&mut *tx)
        .await
        .map_err(db("cannot insert a run"))?
        .rows_affected();
        if inserted == 1 {
            notify(&mut tx, origin, &[(run.id, Some(run.status))]).await?;
            commit(tx).await?;
            return Ok(Submitted { run, created: true });
        }
    }
    Err(Error::Database(DatabaseError::new(
        DatabaseErrorKind::Busy,
        format!(
            "a submit of `{}` kept conflicting with concurrent submits and was given up; try again",
            new.task_title
        ),
    )))
}

pub(super) async fn cancel(pool: &PgPool, origin: &str, id: RunId, now: Timestamp) -> Result<Run> {
    let mut tx = begin(pool).await?;
    let mut run = load(&mut tx, id, "FOR UPDATE").await?.ok_or(Error::NotFound(id))?;
    apply::cancel(&mut run, now)?;
    save(&mut tx, std::slice::from_ref(&run)).await?;
    notify(&mut tx, origin, &[(id, Some(run.status))]).await?;
    commit(tx).await?;
    Ok(run)
}

pub(super) async fn delete(pool: &PgPool, origin: &str, id: RunId, force: bool) -> Result<()> {
    let mut tx = begin(pool).await?;
    let status: Option<String> = query_scalar("SELECT status FROM taskflow_runs WHERE id = $1 FOR UPDATE")
        .bind(id.as_uuid())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db("cannot read a run"))?;
    let status = parse_status(&id.to_string(), &status.ok_or(Error::NotFound(id))?)?;
    if is_active(status) && !force {
        return Err(Error::Active(id));
    }
    // Its log lines go with it (`ON DELETE CASCADE`).
    query("DELETE FROM taskflow_runs WHERE id = $1")
        .bind(id.as_uuid())
        .execute(&mut *tx)
        .await
        .map_err(db("cannot delete a run"))?;
    notify(&mut tx, origin, &[(id, None)]).await?;
    commit(tx).await
}

/// Rescues up to [`RESCUE_BATCH`] running runs whose lease ended before
/// `expired_before` (in the database's clock), at `now` (the caller's);
/// runs another transaction holds are left for the next rescue.
pub(super) async fn rescue_batch(
    pool: &PgPool,
    origin: &str,
    now: Timestamp,
    expired_before: Timestamp,
) -> Result<Vec<Run>> {
    let mut tx = begin(pool).await?;
    let sql = format!(
        "SELECT {RUN_COLUMNS} FROM taskflow_runs WHERE status = 'running' AND lease_until < $1 \
         ORDER BY lease_until, taskflow_runs.id LIMIT {RESCUE_BATCH} FOR UPDATE SKIP LOCKED"
    );
    let rows =
        query(&sql).bind(expired_before.0).fetch_all(&mut *tx).await.map_err(db("cannot select expired leases"))?;
    let mut runs = rows.iter().map(read_run).collect::<Result<Vec<_>>>()?;
    for run in &mut runs {
        apply::expire(run, now)?;
    }
    save(&mut tx, &runs).await?;
    notify(&mut tx, origin, &announced(&runs)).await?;
    commit(tx).await?;
    Ok(runs)
}

/// Deletes up to [`PRUNE_BATCH`] final runs finished before `before`, with
/// their logs. Not announced: nobody waits for runs that old.
pub(super) async fn prune_batch(pool: &PgPool, before: Timestamp) -> Result<u64> {
    let sql = format!(
        "DELETE FROM taskflow_runs WHERE id IN (\
             SELECT id FROM taskflow_runs \
             WHERE finished_at < $1 AND status IN ('completed', 'failed', 'cancelled') \
             LIMIT {PRUNE_BATCH} FOR UPDATE SKIP LOCKED)"
    );
    let done = query(&sql).bind(before.0).execute(pool).await.map_err(db("cannot prune runs"))?;
    Ok(done.rows_affected())
}

/// Drops the concurrency limits claimers declared that lapsed before
/// `before` (their claimers stopped claiming long ago).
pub(super) async fn prune_limits(pool: &PgPool, before: Timestamp) -> Result<()> {
    query("DELETE FROM taskflow_task_limits WHERE expires_at < $1")
        .bind(before.0)
        .execute(pool)
        .await
        .map_err(db("cannot prune the concurrency limits of tasks"))?;
    Ok(())
}

/// Appends log lines; each gets the next sequence number of its run. Lines
/// of unknown (deleted) runs are dropped. Not announced: the run itself does
/// not change.
pub(super) async fn append_logs(
    pool: &PgPool,
    lines: Vec<(RunId, Timestamp, Level, String)>,
) -> Result<Vec<StoredLogLine>> {
    if lines.is_empty() {
        return Ok(Vec::new());
    }
    let mut counts: BTreeMap<uuid::Uuid, i64> = BTreeMap::new();
    for (id, ..) in &lines {
        *counts.entry(id.as_uuid()).or_default() += 1;
    }
    let ids: Vec<uuid::Uuid> = counts.keys().copied().collect();
    let added: Vec<i64> = counts.values().copied().collect();

    let mut tx = begin(pool).await?;
    lock_in_order(&mut tx, &ids, "cannot append log lines").await?;
    // Each run's count grows by its lines; its new lines follow the old count.
    let mut next_seq: BTreeMap<uuid::Uuid, i64> = query(
        "UPDATE taskflow_runs AS r SET log_count = r.log_count + c.added \
         FROM unnest($1::uuid[], $2::bigint[]) AS c (id, added) WHERE r.id = c.id \
         RETURNING r.id, r.log_count - c.added + 1",
    )
    .bind(&ids)
    .bind(&added)
    .fetch_all(&mut *tx)
    .await
    .map_err(db("cannot append log lines"))?
    .iter()
    .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
    .collect::<Result<_, sqlx_core::Error>>()
    .map_err(db("cannot append log lines"))?;

    let mut columns = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut stored = Vec::with_capacity(lines.len());
    for (run_id, at, level, message) in lines {
        let Some(seq) = next_seq.get_mut(&run_id.as_uuid()) else { continue };
        let message = storable(&message);
        columns.0.push(run_id.as_uuid());
        columns.1.push(*seq);
        columns.2.push(at.0);
        columns.3.push(level_name(level));
        columns.4.push(message.clone());
        let number = u64::try_from(*seq).map_err(|_| corrupt(&run_id.to_string(), "log sequence number", *seq))?;
        stored.push(StoredLogLine { run_id, seq: number, at, level, message });
        *seq += 1;
    }
    query(
        "INSERT INTO taskflow_run_logs (run_id, seq, at, level, message) \
         SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::bigint[], $4::text[], $5::text[])",
    )
    .bind(&columns.0)
    .bind(&columns.1)
    .bind(&columns.2)
    .bind(&columns.3)
    .bind(&columns.4)
    .execute(&mut *tx)
    .await
    .map_err(db("cannot append log lines"))?;
    commit(tx).await?;
    Ok(stored)
}

/// Locks the runs `ids` (those that exist) in id order: writers locking
/// several runs in one order cannot deadlock each other.
pub(super) async fn lock_in_order(tx: &mut PgTransaction<'_>, ids: &[uuid::Uuid], context: &'static str) -> Result<()> {
    query("SELECT 1 FROM taskflow_runs WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE")
        .bind(ids)
        .execute(&mut **tx)
        .await
        .map_err(db(context))?;
    Ok(())
}

/// Writes everything a status change may touch, for every run in one
/// statement. The runs are locked by the caller's transaction.
///
/// `r.id = ANY($1)` repeats the join on purpose: it lets the planner find
/// the rows by primary key whatever it believes of the table's size. On a
/// young table (no statistics yet, its size growing by thousands a second)
/// the join alone was planned as a scan of the whole table per claim.
pub(super) async fn save(tx: &mut PgTransaction<'_>, runs: &[Run]) -> Result<()> {
    if runs.is_empty() {
        return Ok(());
    }
    let mut columns = ChangedColumns::default();
    runs.iter().for_each(|run| columns.push(run));
    let changed = columns
        .bind(query(
            "UPDATE taskflow_runs AS r SET status = u.status, attempt = u.attempt, not_before = u.not_before, \
         started_at = u.started_at, finished_at = u.finished_at, result = u.result::json, \
         error_kind = u.error_kind, error_message = u.error_message, worker_id = u.worker_id, \
         lease_until = u.lease_until, attempts = u.attempts::json, progress_done = u.progress_done, \
         progress_total = u.progress_total \
         FROM unnest($1::uuid[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[], $7::text[], \
                     $8::text[], $9::text[], $10::text[], $11::bigint[], $12::text[], $13::bigint[], $14::bigint[]) \
             AS u (id, status, attempt, not_before, started_at, finished_at, result, error_kind, error_message, \
                   worker_id, lease_until, attempts, progress_done, progress_total) \
         WHERE r.id = u.id AND r.id = ANY($1)",
        ))
        .execute(&mut **tx)
        .await
        .map_err(db("cannot update runs"))?
        .rows_affected();
    if changed != runs.len() as u64 {
        return Err(Error::other(format!("cannot update runs: {changed} of {} were found", runs.len())));
    }
    Ok(())
}

/// The columns a status change may touch, of several runs, as arrays for
/// `unnest`: what [`save`] writes, and the group commit's finishes.
#[derive(Default)]
pub(super) struct ChangedColumns<'a> {
    ids: Vec<uuid::Uuid>,
    statuses: Vec<&'static str>,
    attempts: Vec<i64>,
    not_befores: Vec<i64>,
    started: Vec<Option<i64>>,
    finished: Vec<Option<i64>>,
    results: Vec<Option<String>>,
    error_kinds: Vec<Option<&'a str>>,
    error_messages: Vec<Option<&'a str>>,
    workers: Vec<Option<&'a str>>,
    leases: Vec<Option<i64>>,
    ended: Vec<Option<String>>,
    progress_done: Vec<Option<i64>>,
    progress_total: Vec<Option<i64>>,
}

impl<'a> ChangedColumns<'a> {
    pub(super) fn push(&mut self, run: &'a Run) {
        self.ids.push(run.id.as_uuid());
        self.statuses.push(run.status.as_str());
        self.attempts.push(i64::from(run.attempt));
        self.not_befores.push(run.not_before.0);
        self.started.push(run.started_at.map(|t| t.0));
        self.finished.push(run.finished_at.map(|t| t.0));
        self.results.push(run.result.as_ref().map(Value::to_string));
        self.error_kinds.push(run.error.as_ref().map(|e| e.kind.as_str()));
        self.error_messages.push(run.error.as_ref().map(|e| e.message.as_str()));
        self.workers.push(run.worker_id.as_deref());
        self.leases.push(run.lease_until.map(|t| t.0));
        self.ended.push(attempts_json(run));
        let (done, total) = progress_columns(run.progress);
        self.progress_done.push(done);
        self.progress_total.push(total);
    }

    /// Binds the columns, in the order above, as the query's next fourteen
    /// arguments.
    pub(super) fn bind<'q>(&'q self, query: Query<'q, Postgres, PgArguments>) -> Query<'q, Postgres, PgArguments> {
        query
            .bind(&self.ids)
            .bind(&self.statuses)
            .bind(&self.attempts)
            .bind(&self.not_befores)
            .bind(&self.started)
            .bind(&self.finished)
            .bind(&self.results)
            .bind(&self.error_kinds)
            .bind(&self.error_messages)
            .bind(&self.workers)
            .bind(&self.leases)
            .bind(&self.ended)
            .bind(&self.progress_done)
            .bind(&self.progress_total)
    }
}
