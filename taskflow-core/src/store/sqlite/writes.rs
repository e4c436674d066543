//! The writes: submit, claim, heartbeat, finish, cancel, delete, rescue,
//! prune and log lines. Each runs inside its savepoint on the writer's
//! connection, or changes the database in its last statement only.

use std::collections::BTreeMap;

use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};

use super::reads::load;
use super::rows::{db, query_runs, read_run, save};
use super::{PRUNE_BATCH, RESCUE_BATCH, RUN_COLUMNS, statements};
use crate::log::Level;
use crate::run::{Run, RunId, Timestamp};
use crate::store::row::{corrupt, level_name, parse_status, progress_columns, to_i64};
use crate::store::{ClaimRequest, Error, NewRun, Renewal, Report, Result, StoredLogLine, Submitted, apply, is_active};

/// A submit with everything computed that needs no database: the run it
/// creates (if nothing is found to share), its key and its text columns.
pub(super) struct PreparedSubmit {
    new: NewRun,
    unique_key: String,
    run: Run,
    id: String,
    payload: String,
}

impl PreparedSubmit {
    pub(super) fn new(new: NewRun, now: Timestamp) -> Result<PreparedSubmit> {
        let run = apply::create(&new, now)?;
        Ok(PreparedSubmit {
            unique_key: new.unique_key(),
            id: run.id.to_string(),
            payload: run.payload.to_string(),
            run,
            new,
        })
    }
}

#[cfg(test)]
pub(super) fn submit(conn: &Connection, new: NewRun, now: Timestamp) -> Result<Submitted> {
    submit_prepared(conn, PreparedSubmit::new(new, now)?)
}

pub(super) fn submit_prepared(conn: &Connection, prepared: PreparedSubmit) -> Result<Submitted> {
    let PreparedSubmit { new, unique_key, mut run, id, payload } = prepared;
    if let Some(key) = &new.idempotency_key {
        let sql = format!("SELECT {RUN_COLUMNS}, unique_key FROM runs WHERE idempotency_key = ?1");
        let mut stmt = conn.prepare_cached(&sql).map_err(db("cannot look up an idempotency key"))?;
        let mut rows = stmt.query([key]).map_err(db("cannot look up an idempotency key"))?;
        if let Some(row) = rows.next().map_err(db("cannot look up an idempotency key"))? {
            let run = read_run(row)?;
            let existing_key: String = row.get(23).map_err(db("cannot look up an idempotency key"))?;
            if existing_key == unique_key {
                return Ok(Submitted { run, created: false });
            }
            return Err(Error::IdempotencyConflict { key: key.clone(), existing: run.id });
        }
    }
    if new.unique {
        let mut stmt = conn.prepare_cached(statements::FIND_ACTIVE).map_err(db("cannot look up an active run"))?;
        let mut rows = stmt.query([&unique_key]).map_err(db("cannot look up an active run"))?;
        if let Some(row) = rows.next().map_err(db("cannot look up an active run"))? {
            return Ok(Submitted { run: read_run(row)?, created: false });
        }
    }

    if let Some(worker_id) = run.worker_id.as_deref()
        && limited_elsewhere(conn, &run.task_title, worker_id, run.created_at)?
    {
        apply::unclaim_submit(&mut run)?;
    }

    let mut stmt = conn.prepare_cached(statements::INSERT_RUN).map_err(db("cannot insert a run"))?;
    stmt.execute(params![
        id,
        run.task_title,
        payload,
        run.status.as_str(),
        run.attempt,
        run.max_attempts,
        run.executor.as_str(),
        run.priority,
        run.not_before.0,
        run.timeout_ms.map(to_i64),
        to_i64(run.retry_delay_ms),
        run.created_at.0,
        run.started_at.map(|t| t.0),
        run.worker_id,
        run.lease_until.map(|t| t.0),
        run.idempotency_key,
        unique_key,
    ])
    .map_err(db("cannot insert a run"))?;
    Ok(Submitted { run, created: true })
}

pub(super) fn claim(conn: &Connection, request: &ClaimRequest) -> Result<Vec<Run>> {
    let executors = apply::distinct(&request.executors);
    if executors.is_empty() || request.titles.is_empty() || request.limit == 0 {
        return Ok(Vec::new());
    }
    // Room left under each task's concurrency limit (the smallest declared
    // by this claimer or another live one); full tasks are skipped in the
    // query, the others are capped while picking.
    let others = declare_limits(conn, request)?;
    let mut running = BTreeMap::new();
    let limits = apply::limits(request, &others);
    for title in limits.keys() {
        let count: i64 = conn
            .prepare_cached("SELECT COUNT(*) FROM runs WHERE status = 'running' AND task_title = ?")
            .and_then(|mut statement| statement.query_row([title], |row| row.get(0)))
            .map_err(db("cannot count running runs of a task"))?;
        running.insert((*title).to_owned(), count);
    }
    let mut room = apply::room(limits, &running, request);
    let full = apply::full(&room);
    let placeholders = vec!["?"; executors.len()].join(", ");
    let title_placeholders = vec!["?"; request.titles.len()].join(", ");
    let skip_full = if full.is_empty() {
        String::new()
    } else {
        format!(" AND task_title NOT IN ({})", vec!["?"; full.len()].join(", "))
    };
    let sql = format!(
        "SELECT {RUN_COLUMNS} FROM runs WHERE status = 'pending' AND not_before <= ? AND executor IN ({placeholders}) \
         AND task_title IN ({title_placeholders}){skip_full} \
         ORDER BY priority DESC, not_before, id LIMIT ?"
    );
    let mut args = Vec::with_capacity(executors.len() + request.titles.len() + full.len() + 2);
    args.push(SqlValue::Integer(request.now.0));
    args.extend(executors.iter().map(|executor| SqlValue::Text(executor.as_str().to_owned())));
    args.extend(request.titles.iter().map(|title| SqlValue::Text(title.clone())));
    args.extend(full.iter().map(|title| SqlValue::Text((*title).to_owned())));
    // Look a little further when limited tasks may have to be passed over.
    args.push(SqlValue::Integer(i64::from(apply::window(request.limit, &room))));
    let candidates = query_runs(conn, &sql, params_from_iter(args), "cannot select runs to claim")?;
    let mut runs = apply::pick(candidates.into_iter().map(Ok), request.limit, &mut room)?;

    let lease_until = request.now.plus(request.lease);
    for run in &mut runs {
        apply::claim(run, &request.worker_id, lease_until, request.now)?;
        save(conn, run)?;
    }
    Ok(runs)
}

/// Records the concurrency limits `request` declares as its claimer's
/// (replacing the claimer's earlier ones, dropping lapsed ones of anyone)
/// and returns the smallest live limit other claimers declare per task.
fn declare_limits(conn: &Connection, request: &ClaimRequest) -> Result<BTreeMap<String, u32>> {
    const FAILED: &str = "cannot record the concurrency limits of tasks";
    conn.prepare_cached("DELETE FROM task_limits WHERE worker_id = ?1 OR expires_at <= ?2")
        .and_then(|mut statement| statement.execute(params![request.worker_id, request.now.0]))
        .map_err(db(FAILED))?;
    let expires_at = apply::declarations_expire(request.now, request.lease);
    for (title, limit) in &request.task_limits {
        conn.prepare_cached("INSERT OR REPLACE INTO task_limits VALUES (?1, ?2, ?3, ?4)")
            .and_then(|mut statement| statement.execute(params![request.worker_id, title, limit, expires_at.0]))
            .map_err(db(FAILED))?;
    }
    let mut statement = conn
        .prepare_cached(
            "SELECT task_title, MIN(max_running) FROM task_limits WHERE worker_id <> ?1 GROUP BY task_title",
        )
        .map_err(db(FAILED))?;
    let rows = statement.query_map([&request.worker_id], |row| Ok((row.get(0)?, row.get(1)?))).map_err(db(FAILED))?;
    rows.collect::<rusqlite::Result<_>>().map_err(db(FAILED))
}

/// Whether a live declaration of another claimer limits `title`: a submit
/// then does not claim its run (the claim loop honours the limit).
pub(super) fn limited_elsewhere(conn: &Connection, title: &str, worker_id: &str, now: Timestamp) -> Result<bool> {
    conn.prepare_cached("SELECT 1 FROM task_limits WHERE task_title = ?1 AND worker_id <> ?2 AND expires_at > ?3")
        .and_then(|mut statement| statement.exists(params![title, worker_id, now.0]))
        .map_err(db("cannot read the concurrency limits of tasks"))
}

pub(super) fn heartbeat(
    conn: &Connection,
    worker_id: &str,
    runs: &[Renewal],
    lease_until: Timestamp,
) -> Result<Vec<RunId>> {
    // New progress replaces the stored one; none keeps it.
    let mut stmt = conn
        .prepare_cached(
            "UPDATE runs SET lease_until = ?1, progress_done = coalesce(?5, progress_done), \
             progress_total = coalesce(?6, progress_total) \
             WHERE id = ?2 AND status = 'running' AND attempt = ?3 AND worker_id = ?4",
        )
        .map_err(db("cannot renew leases"))?;
    let mut lost = Vec::new();
    for renewal in runs {
        let (done, total) = progress_columns(renewal.progress);
        let renewed = stmt
            .execute(params![lease_until.0, renewal.id.to_string(), renewal.attempt, worker_id, done, total])
            .map_err(db("cannot renew a lease"))?;
        if renewed == 0 {
            lost.push(renewal.id);
        }
    }
    Ok(lost)
}

pub(super) fn finish(conn: &Connection, report: Report) -> Result<Run> {
    let id = report.id;
    let mut run = load(conn, id)?.ok_or(Error::NotFound(id))?;
    apply::finish(&mut run, report)?;
    save(conn, &run)?;
    Ok(run)
}

pub(super) fn cancel(conn: &Connection, id: RunId, now: Timestamp) -> Result<Run> {
    let mut run = load(conn, id)?.ok_or(Error::NotFound(id))?;
    apply::cancel(&mut run, now)?;
    save(conn, &run)?;
    Ok(run)
}

pub(super) fn delete(conn: &Connection, id: RunId, force: bool) -> Result<()> {
    let mut stmt = conn.prepare_cached("SELECT status FROM runs WHERE id = ?1").map_err(db("cannot read a run"))?;
    let status: Option<String> =
        stmt.query_row([id.to_string()], |row| row.get(0)).optional().map_err(db("cannot read a run"))?;
    let status = parse_status(&id.to_string(), &status.ok_or(Error::NotFound(id))?)?;
    if is_active(status) && !force {
        return Err(Error::Active(id));
    }
    delete_run(conn, &id.to_string())
}

fn delete_run(conn: &Connection, id: &str) -> Result<()> {
    conn.prepare_cached("DELETE FROM run_logs WHERE run_id = ?1")
        .and_then(|mut stmt| stmt.execute([id]))
        .map_err(db("cannot delete a run's log"))?;
    conn.prepare_cached("DELETE FROM runs WHERE id = ?1")
        .and_then(|mut stmt| stmt.execute([id]))
        .map_err(db("cannot delete a run"))?;
    Ok(())
}

/// Rescues up to [`RESCUE_BATCH`] running runs whose lease ended before `now`.
pub(super) fn rescue_batch(conn: &Connection, now: Timestamp) -> Result<Vec<Run>> {
    let sql = format!(
        "SELECT {RUN_COLUMNS} FROM runs WHERE status = 'running' AND lease_until < ?1 \
         ORDER BY lease_until, id LIMIT {RESCUE_BATCH}"
    );
    let mut runs = query_runs(conn, &sql, [now.0], "cannot select expired leases")?;
    for run in &mut runs {
        apply::expire(run, now)?;
        save(conn, run)?;
    }
    Ok(runs)
}

/// Deletes up to [`PRUNE_BATCH`] final runs finished before `before`.
pub(super) fn prune_batch(conn: &Connection, before: Timestamp) -> Result<usize> {
    // `+status`: look runs up by `finished_at` (the status only guards).
    let sql = format!(
        "SELECT id FROM runs WHERE finished_at < ?1 AND +status IN ('completed', 'failed', 'cancelled') \
         LIMIT {PRUNE_BATCH}"
    );
    let ids: Vec<String> = conn
        .prepare_cached(&sql)
        .and_then(|mut stmt| stmt.query_map([before.0], |row| row.get(0))?.collect())
        .map_err(db("cannot select runs to prune"))?;
    for id in &ids {
        delete_run(conn, id)?;
    }
    Ok(ids.len())
}

pub(super) fn append_logs(
    conn: &Connection,
    lines: Vec<(RunId, Timestamp, Level, String)>,
) -> Result<Vec<StoredLogLine>> {
    let mut next = conn
        .prepare_cached("UPDATE runs SET log_count = log_count + 1 WHERE id = ?1 RETURNING log_count")
        .map_err(db("cannot append log lines"))?;
    let mut insert = conn
        .prepare_cached("INSERT INTO run_logs (run_id, seq, at, level, message) VALUES (?1, ?2, ?3, ?4, ?5)")
        .map_err(db("cannot append log lines"))?;
    let mut stored = Vec::with_capacity(lines.len());
    for (run_id, at, level, message) in lines {
        let id = run_id.to_string();
        let seq: Option<i64> =
            next.query_row([&id], |row| row.get(0)).optional().map_err(db("cannot append a log line"))?;
        // A line of an unknown (deleted) run is dropped.
        if let Some(seq) = seq {
            insert
                .execute(params![id, seq, at.0, level_name(level), message])
                .map_err(db("cannot append a log line"))?;
            let seq = u64::try_from(seq).map_err(|_| corrupt(&id, "log sequence number", seq))?;
            stored.push(StoredLogLine { run_id, seq, at, level, message });
        }
    }
    Ok(stored)
}
