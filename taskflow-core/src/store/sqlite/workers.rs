//! The worker registry on SQLite: provision tokens used up in the same
//! transaction as the worker they register.

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::RUN_COLUMNS;
use super::rows::{db, query_runs, save};
use crate::run::{Run, Timestamp};
use crate::store::workers::{RawWorker, check_provision, json_list, json_refused, worker_columns};
use crate::store::{Error, NewProvisionToken, Registration, Result, WorkerRecord, apply};

const WORKER_COLUMNS: &str = worker_columns!("");

pub(super) fn add_provision_token(conn: &Connection, token: &NewProvisionToken) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO provision_tokens (token_hash, name, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
    )
    .and_then(|mut stmt| stmt.execute(params![token.token_hash, token.name, token.created_at.0, token.expires_at.0]))
    .map_err(db("cannot store a provision token"))?;
    Ok(())
}

pub(super) fn register_worker(conn: &Connection, registration: &Registration) -> Result<WorkerRecord> {
    let found: Option<(String, Option<i64>, i64)> = conn
        .prepare_cached("SELECT name, used_at, expires_at FROM provision_tokens WHERE token_hash = ?1")
        .and_then(|mut stmt| {
            stmt.query_row([&registration.provision_hash], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?))).optional()
        })
        .map_err(db("cannot read a provision token"))?;
    check_provision(found.as_ref().map(|(_, used, expires)| (used.is_some(), Timestamp(*expires))), registration.now)?;
    let name = found.map(|(name, ..)| name).unwrap_or_default();
    conn.prepare_cached("UPDATE provision_tokens SET used_at = ?2, worker_id = ?3 WHERE token_hash = ?1")
        .and_then(|mut stmt| {
            stmt.execute(params![registration.provision_hash, registration.now.0, registration.worker_id])
        })
        .map_err(db("cannot use up a provision token"))?;
    let profile = &registration.profile;
    conn.prepare_cached(
        "INSERT INTO workers (id, token_hash, name, host, version, executors, tasks, queues, registered_at, \
         last_seen, refused) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9, ?10)",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            registration.worker_id,
            registration.token_hash,
            name,
            profile.host,
            profile.version,
            json_list(&profile.executors),
            json_list(&profile.tasks),
            json_list(&profile.queues),
            registration.now.0,
            json_refused(&profile.refused),
        ])
    })
    .map_err(db("cannot register a worker"))?;
    Ok(WorkerRecord {
        id: registration.worker_id.clone(),
        name,
        profile: profile.clone(),
        registered_at: registration.now,
        last_seen: registration.now,
        revoked_at: None,
    })
}

pub(super) fn worker_by_token(conn: &Connection, token_hash: &str) -> Result<Option<WorkerRecord>> {
    conn.prepare_cached(&format!("SELECT {WORKER_COLUMNS} FROM workers WHERE token_hash = ?1"))
        .and_then(|mut stmt| stmt.query_row([token_hash], raw_worker).optional())
        .map_err(db("cannot read a worker"))?
        .map(RawWorker::into_record)
        .transpose()
}

pub(super) fn workers(conn: &Connection) -> Result<Vec<WorkerRecord>> {
    let raw: Vec<RawWorker> = conn
        .prepare_cached(&format!("SELECT {WORKER_COLUMNS} FROM workers ORDER BY registered_at, id"))
        .and_then(|mut stmt| stmt.query_map([], raw_worker)?.collect())
        .map_err(db("cannot list workers"))?;
    raw.into_iter().map(RawWorker::into_record).collect()
}

pub(super) fn worker_seen(conn: &Connection, worker_id: &str, now: Timestamp) -> Result<()> {
    conn.prepare_cached("UPDATE workers SET last_seen = max(last_seen, ?2) WHERE id = ?1")
        .and_then(|mut stmt| stmt.execute(params![worker_id, now.0]))
        .map_err(db("cannot record that a worker was seen"))?;
    Ok(())
}

pub(super) fn revoke_worker(conn: &Connection, worker_id: &str, now: Timestamp) -> Result<Vec<Run>> {
    let known = conn
        .prepare_cached("UPDATE workers SET revoked_at = coalesce(revoked_at, ?2) WHERE id = ?1")
        .and_then(|mut stmt| stmt.execute(params![worker_id, now.0]))
        .map_err(db("cannot revoke a worker"))?;
    if known == 0 {
        return Err(Error::UnknownWorker(worker_id.to_owned()));
    }
    let sql = format!("SELECT {RUN_COLUMNS} FROM runs WHERE status = 'running' AND worker_id = ?1 ORDER BY id");
    let mut runs = query_runs(conn, &sql, [worker_id], "cannot select a revoked worker's runs")?;
    for run in &mut runs {
        apply::revoke(run, now)?;
        save(conn, run)?;
    }
    Ok(runs)
}

fn raw_worker(row: &Row<'_>) -> rusqlite::Result<RawWorker> {
    Ok(RawWorker {
        id: row.get(0)?,
        name: row.get(1)?,
        host: row.get(2)?,
        version: row.get(3)?,
        executors: row.get(4)?,
        tasks: row.get(5)?,
        queues: row.get(6)?,
        registered_at: row.get(7)?,
        last_seen: row.get(8)?,
        revoked_at: row.get(9)?,
        refused: row.get(10)?,
    })
}
