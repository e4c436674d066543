//! The change feed: every transaction that changes runs announces them
//! with `pg_notify`, and a listener task forwards what it hears to the
//! [`Store::changes`](crate::store::Store::changes) receivers.

use std::sync::Arc;

use sqlx_postgres::{PgListener, PgPool, PgTransaction};
use tokio::sync::broadcast;

use super::rows::{db, query};
use super::{CHANNEL, DELETED, LISTEN_RETRY, NOTIFY_CHUNK};
use crate::run::{Run, RunId, RunStatus};
use crate::store::{Change, Result};

/// A listener on the changes channel, on a connection of `pool`.
pub(super) async fn listen(pool: &PgPool) -> Result<PgListener, sqlx_core::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

/// Forwards the changes announced to the broadcast channel, for as long as
/// the store lives (the task is aborted with it). A lost connection is
/// re-established; what changed meanwhile is not announced.
pub(super) async fn forward_changes(
    pool: PgPool,
    mut listener: PgListener,
    origin: Arc<str>,
    changes: broadcast::Sender<Change>,
) {
    loop {
        let error = loop {
            match listener.try_recv().await {
                Ok(Some(notification)) => match parse_changes(notification.payload(), &origin) {
                    // No receiver is fine.
                    Some(announced) => announced.into_iter().for_each(|change| drop(changes.send(change))),
                    None => tracing::warn!(
                        payload = notification.payload(),
                        "ignoring a malformed run change notification (from an older version of TaskFlow?)"
                    ),
                },
                // The listener has reconnected by itself.
                Ok(None) => {
                    tracing::warn!("the connection listening for run changes dropped; changes meanwhile are missed")
                }
                Err(error) => break error,
            }
        };
        tracing::warn!(%error, "lost the connection listening for run changes; reconnecting");
        listener = relisten(&pool, listener).await;
    }
}

/// A new listener in place of `broken`, retrying with back-off until the
/// server answers.
pub(super) async fn relisten(pool: &PgPool, broken: PgListener) -> PgListener {
    // Its connection is the pool's only one.
    drop(broken);
    let mut wait = LISTEN_RETRY.0;
    loop {
        match listen(pool).await {
            Ok(listener) => {
                tracing::info!("listening for run changes again");
                return listener;
            }
            Err(error) => tracing::warn!(%error, "cannot listen for run changes; retrying in {wait:?}"),
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(LISTEN_RETRY.1);
    }
}

/// Announces that runs changed (to their status, or `None`: deleted), at
/// the commit of `tx`: a notification per [`NOTIFY_CHUNK`] runs, its
/// payload `<origin> <id>:<status> <id>:<status> …` (see [`parse_changes`];
/// the group commit's statement builds the same payloads in SQL).
pub(super) async fn notify(
    tx: &mut PgTransaction<'_>,
    origin: &str,
    changes: &[(RunId, Option<RunStatus>)],
) -> Result<()> {
    if changes.is_empty() {
        return Ok(());
    }
    let payloads: Vec<String> = changes
        .chunks(NOTIFY_CHUNK)
        .map(|chunk| {
            let mut payload = origin.to_owned();
            for (id, status) in chunk {
                let status = status.map_or(DELETED, RunStatus::as_str);
                payload.push_str(&format!(" {id}:{status}"));
            }
            payload
        })
        .collect();
    query("SELECT pg_notify($1, payload) FROM unnest($2::text[]) AS payload")
        .bind(CHANNEL)
        .bind(&payloads)
        .execute(&mut **tx)
        .await
        .map_err(db("cannot announce a change"))?;
    Ok(())
}

/// The announcement of `runs` changing to their current status.
pub(super) fn announced(runs: &[Run]) -> Vec<(RunId, Option<RunStatus>)> {
    runs.iter().map(|run| (run.id, Some(run.status))).collect()
}

/// The changes a notification's payload announces, each marked `own` when
/// its origin is `origin`; `None` for a payload that is not one of ours.
pub(super) fn parse_changes(payload: &str, origin: &str) -> Option<Vec<Change>> {
    let mut parts = payload.split(' ');
    let own = parts.next()? == origin;
    let changes: Vec<Change> = parts
        .map(|part| {
            let (id, status) = part.split_once(':')?;
            let status = if status == DELETED { None } else { Some(status.parse().ok()?) };
            Some(Change { id: id.parse().ok()?, status, own })
        })
        .collect::<Option<_>>()?;
    (!changes.is_empty()).then_some(changes)
}
