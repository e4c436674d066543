//! The worker registry on PostgreSQL: a provision token is locked and used
//! up in the same transaction as the worker it registers, so two workers
//! presenting one token at once register one.

use sqlx_core::row::Row;
use sqlx_postgres::{PgPool, PgRow};

use super::RUN_COLUMNS;
use super::changes::{announced, notify};
use super::rows::{db, query, read_run, storable};
use super::writes::{begin, commit, save};
use crate::run::{Run, Timestamp};
use crate::store::workers::{RawWorker, check_provision, json_list, json_refused, worker_columns};
use crate::store::{Error, NewProvisionToken, Registration, Result, WorkerRecord, apply};

const WORKER_COLUMNS: &str = worker_columns!("::text");

pub(super) async fn add_provision_token(pool: &PgPool, token: &NewProvisionToken) -> Result<()> {
    query("INSERT INTO taskflow_provision_tokens (token_hash, name, created_at, expires_at) VALUES ($1, $2, $3, $4)")
        .bind(&token.token_hash)
        .bind(storable(&token.name))
        .bind(token.created_at.0)
        .bind(token.expires_at.0)
        .execute(pool)
        .await
        .map_err(db("cannot store a provision token"))?;
    Ok(())
}

pub(super) async fn register_worker(pool: &PgPool, registration: &Registration) -> Result<WorkerRecord> {
    let mut tx = begin(pool).await?;
    let found =
        query("SELECT name, used_at, expires_at FROM taskflow_provision_tokens WHERE token_hash = $1 FOR UPDATE")
            .bind(&registration.provision_hash)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db("cannot read a provision token"))?
            .map(|row| -> Result<(String, Option<i64>, i64), sqlx_core::Error> {
                Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?))
            })
            .transpose()
            .map_err(db("cannot read a provision token"))?;
    check_provision(found.as_ref().map(|(_, used, expires)| (used.is_some(), Timestamp(*expires))), registration.now)?;
    let name = found.map(|(name, ..)| name).unwrap_or_default();
    query("UPDATE taskflow_provision_tokens SET used_at = $2, worker_id = $3 WHERE token_hash = $1")
        .bind(&registration.provision_hash)
        .bind(registration.now.0)
        .bind(&registration.worker_id)
        .execute(&mut *tx)
        .await
        .map_err(db("cannot use up a provision token"))?;
    let profile = &registration.profile;
    query(
        "INSERT INTO taskflow_workers (id, token_hash, name, host, version, executors, tasks, queues, \
         registered_at, last_seen, refused) VALUES ($1, $2, $3, $4, $5, $6::json, $7::json, $8::json, $9, $9, \
         $10::json)",
    )
    .bind(&registration.worker_id)
    .bind(&registration.token_hash)
    .bind(&name)
    .bind(storable(&profile.host))
    .bind(storable(&profile.version))
    .bind(json_list(&profile.executors))
    .bind(json_list(&profile.tasks))
    .bind(json_list(&profile.queues))
    .bind(registration.now.0)
    .bind(storable(&json_refused(&profile.refused)))
    .execute(&mut *tx)
    .await
    .map_err(db("cannot register a worker"))?;
    commit(tx).await?;
    let mut profile = profile.clone();
    profile.host = storable(&profile.host);
    profile.version = storable(&profile.version);
    Ok(WorkerRecord {
        id: registration.worker_id.clone(),
        name,
        profile,
        registered_at: registration.now,
        last_seen: registration.now,
        revoked_at: None,
    })
}

pub(super) async fn worker_by_token(pool: &PgPool, token_hash: &str) -> Result<Option<WorkerRecord>> {
    query(&format!("SELECT {WORKER_COLUMNS} FROM taskflow_workers WHERE token_hash = $1"))
        .bind(token_hash)
        .fetch_optional(pool)
        .await
        .map_err(db("cannot read a worker"))?
        .map(|row| raw_worker(&row).map_err(db("cannot read a worker"))?.into_record())
        .transpose()
}

pub(super) async fn workers(pool: &PgPool) -> Result<Vec<WorkerRecord>> {
    query(&format!("SELECT {WORKER_COLUMNS} FROM taskflow_workers ORDER BY registered_at, id"))
        .fetch_all(pool)
        .await
        .map_err(db("cannot list workers"))?
        .iter()
        .map(|row| raw_worker(row).map_err(db("cannot read a worker"))?.into_record())
        .collect()
}

pub(super) async fn worker_seen(pool: &PgPool, worker_id: &str, now: Timestamp) -> Result<()> {
    query("UPDATE taskflow_workers SET last_seen = greatest(last_seen, $2) WHERE id = $1")
        .bind(worker_id)
        .bind(now.0)
        .execute(pool)
        .await
        .map_err(db("cannot record that a worker was seen"))?;
    Ok(())
}

pub(super) async fn revoke_worker(pool: &PgPool, origin: &str, worker_id: &str, now: Timestamp) -> Result<Vec<Run>> {
    let mut tx = begin(pool).await?;
    let known = query("UPDATE taskflow_workers SET revoked_at = coalesce(revoked_at, $2) WHERE id = $1")
        .bind(worker_id)
        .bind(now.0)
        .execute(&mut *tx)
        .await
        .map_err(db("cannot revoke a worker"))?
        .rows_affected();
    if known == 0 {
        return Err(Error::UnknownWorker(worker_id.to_owned()));
    }
    let sql = format!(
        "SELECT {RUN_COLUMNS} FROM taskflow_runs WHERE status = 'running' AND worker_id = $1 \
         ORDER BY taskflow_runs.id FOR UPDATE"
    );
    let rows =
        query(&sql).bind(worker_id).fetch_all(&mut *tx).await.map_err(db("cannot select a revoked worker's runs"))?;
    let mut runs = rows.iter().map(read_run).collect::<Result<Vec<_>>>()?;
    for run in &mut runs {
        apply::revoke(run, now)?;
    }
    save(&mut tx, &runs).await?;
    notify(&mut tx, origin, &announced(&runs)).await?;
    commit(tx).await?;
    Ok(runs)
}

fn raw_worker(row: &PgRow) -> Result<RawWorker, sqlx_core::Error> {
    Ok(RawWorker {
        id: row.try_get(0)?,
        name: row.try_get(1)?,
        host: row.try_get(2)?,
        version: row.try_get(3)?,
        executors: row.try_get(4)?,
        tasks: row.try_get(5)?,
        queues: row.try_get(6)?,
        registered_at: row.try_get(7)?,
        last_seen: row.try_get(8)?,
        revoked_at: row.try_get(9)?,
        refused: row.try_get(10)?,
    })
}
