//! The routes a registered worker works through, behind [`require_worker`]
//! (its worker token, nothing else): the discovery document, a long-poll
//! claim, and the update that renews its leases (with progress), stores its
//! log lines and reports an attempt's outcome.
//!
//! Every assignment ends in the store's one fenced claim, and every report
//! in its fenced finish, with the worker's id taken from its token, never
//! from the body: a report for another worker's run, or from a superseded
//! attempt, is refused (409) and changes nothing.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{Value, json};
use taskflow_core::client::Client;
use taskflow_core::engine::RunEvent;
use taskflow_core::registry;
use taskflow_core::run::{RunId, Timestamp};
use taskflow_core::store::{self, WorkerRecord};
use taskflow_core::wire::polling::{core_log_line, core_progress, core_renewal, core_report, leased_run};
use taskflow_core::wire::{wire_line, wire_run};
use taskflow_proto::polling::{
    ClaimReply, ClaimRequest, MAX_CLAIM, MAX_WAIT_SECONDS, RevokeReply, RevokeRequest, UpdateReply, UpdateRequest,
};
use taskflow_proto::{FieldIssue, RunStatus};

use super::tokens;
use crate::AppState;
use crate::convert::store_error;
use crate::error::{ApiError, ApiJson, ErrorBody};
use crate::plane::PlaneError;

/// How often a worker's `last_seen` is written at most: each request
/// proves it alive, but one write per request is more than the Workers
/// page needs.
const SEEN_EVERY: Duration = Duration::from_secs(5);

/// The longest a claim waits between looks at the queue when no event
/// says a run may be waiting (a delayed run coming due, say).
const CLAIM_RECHECK: Duration = Duration::from_secs(1);

/// The polling routes' gate: a worker token (`tfw_…`) of a registered,
/// unrevoked worker; its record goes to the handler.
pub(crate) async fn require_worker(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let bearer = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(token) = bearer.filter(|token| token.starts_with(tokens::WORKER_PREFIX)) else {
        return ApiError::unauthorized(
            "this route takes a worker's token: send `Authorization: Bearer tfw_…`, the `worker_token` its \
             registration answered (a user's token does not act as a worker)",
        )
        .into_response();
    };
    let digest = WorkerTokenDigest(tokens::digest(token));
    let store = state.plane.client().store();
    let worker = match store.worker_by_token(digest.0.clone()).await {
        Ok(Some(worker)) => worker,
        Ok(None) => {
            return ApiError::unauthorized("this worker token is not known: register the worker again").into_response();
        }
        Err(error) => return ApiError::from(store_error(error)).into_response(),
    };
    if worker.revoked_at.is_some() {
        return ApiError::unauthorized(format!(
            "the worker `{}` was revoked: an admin must provision it again",
            worker.name
        ))
        .into_response();
    }
    let now = Timestamp::now();
    if now.millis().saturating_sub(worker.last_seen.millis()) >= SEEN_EVERY.as_millis() as i64 {
        // Best effort: a failed write only makes the worker look older.
        if let Err(error) = store.worker_seen(worker.id.clone(), now).await {
            tracing::warn!(%error, worker = %worker.id, "taskflow: cannot record that a worker was seen");
        }
    }
    request.extensions_mut().insert(digest);
    request.extensions_mut().insert(worker);
    next.run(request).await
}

/// The digest of the worker token a request came with, to read the
/// worker's record again.
#[derive(Debug, Clone)]
pub(crate) struct WorkerTokenDigest(String);

/// Whether the worker is revoked now (its record read again).
async fn revoked(client: &Client, digest: &WorkerTokenDigest) -> Result<bool, ApiError> {
    match client.store().worker_by_token(digest.0.clone()).await {
        Ok(worker) => Ok(worker.is_none_or(|w| w.revoked_at.is_some())),
        Err(error) => Err(ApiError::from(store_error(error))),
    }
}

/// The 401 of a worker revoked while it waited.
fn revoked_meanwhile(worker: &WorkerRecord) -> ApiError {
    ApiError::unauthorized(format!("the worker `{}` was revoked: an admin must provision it again", worker.name))
}

/// The lease and heartbeat this server gives its workers' runs.
fn timings(client: &Client) -> (Duration, Duration) {
    client.engine().map_or((Duration::from_secs(30), Duration::from_secs(10)), |engine| {
        (engine.config().lease, engine.config().heartbeat_interval)
    })
}

/// `GET /api/v1/polling/config`: the discovery document.
#[utoipa::path(
    get,
    path = "/api/v1/polling/config",
    operation_id = "polling_config",
    tag = "workers",
    security(("worker" = [])),
    description = "What a worker needs to work with this server: the routes, how to authenticate, the lease and heartbeat. `polling_url` names the claim route, a POST: a GET that handed out work would be unsafe to retry or cache.",
    responses(
        (status = 200, description = "The discovery document", body = Object),
        (status = 401, description = "No valid worker token", body = ErrorBody),
    )
)]
pub(crate) async fn config(
    State(state): State<AppState>,
    limits: Option<Extension<crate::body::BodyLimits>>,
) -> Json<Value> {
    let (lease, heartbeat) = timings(state.plane.client());
    let max_body_bytes = limits.map(|Extension(l)| l.max_bytes);
    Json(json!({
        "protocol_version": taskflow_proto::worker::PROTOCOL_VERSION,
        "registration_url": "/api/v1/polling/register",
        "polling_url": "/api/v1/polling/claim",
        "job_update_url": "/api/v1/polling/update",
        "status_schema_url": "/api/v1/polling/config/statuses",
        "authentication": {"method": "bearer", "header": "Authorization", "prefix": "Bearer "},
        "job_response_template": {
            "task_id": "<the run's id>",
            "attempt": "<the attempt the claim gave>",
            "outcome": {"status": "completed", "result": "<any JSON>"},
        },
        "lease_seconds": lease.as_secs(),
        "heartbeat_seconds": heartbeat.as_secs(),
        "lease_ms": u64::try_from(lease.as_millis()).unwrap_or(u64::MAX),
        "heartbeat_ms": u64::try_from(heartbeat.as_millis()).unwrap_or(u64::MAX),
        "max_body_bytes": max_body_bytes,
    }))
}

/// `GET /api/v1/polling/config/statuses`: the run statuses, and which a
/// worker may report, as a JSON Schema.
#[utoipa::path(
    get,
    path = "/api/v1/polling/config/statuses",
    operation_id = "polling_statuses",
    tag = "workers",
    security(("worker" = [])),
    responses(
        (status = 200, description = "The statuses as a JSON Schema", body = Object),
        (status = 401, description = "No valid worker token", body = ErrorBody),
    )
)]
pub(crate) async fn statuses() -> Json<Value> {
    let all: Vec<&str> = RunStatus::ALL.iter().map(|s| s.as_str()).collect();
    Json(json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "RunStatus",
        "type": "string",
        "enum": all,
        "x-reportable": ["completed", "failed", "released"],
        "description": "A run's status. A worker reports an attempt as `completed` (with its result), `failed` (with kind, message and when to retry) or `released` (handed back unexecuted); the others are the server's.",
    }))
}

/// `POST /api/v1/polling/claim`: a long poll for runs of the worker's tasks.
#[utoipa::path(
    post,
    path = "/api/v1/polling/claim",
    operation_id = "polling_claim",
    tag = "workers",
    security(("worker" = [])),
    request_body = ClaimRequest,
    responses(
        (status = 200, description = "The runs claimed (none when the wait ended first)", body = ClaimReply),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "No valid worker token", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "A field is out of range", body = ErrorBody),
        (status = 503, description = "The store is not reachable", body = ErrorBody),
    )
)]
pub(crate) async fn claim(
    State(state): State<AppState>,
    Extension(worker): Extension<WorkerRecord>,
    Extension(digest): Extension<WorkerTokenDigest>,
    ApiJson(request): ApiJson<ClaimRequest>,
) -> Result<Json<ClaimReply>, ApiError> {
    if !(1..=MAX_CLAIM).contains(&request.limit) {
        return Err(invalid("limit", format!("ask for 1 to {MAX_CLAIM} runs")));
    }
    if request.wait_seconds > MAX_WAIT_SECONDS {
        return Err(invalid("wait_seconds", format!("wait at most {MAX_WAIT_SECONDS} seconds")));
    }
    let arrived = tokio::time::Instant::now();
    let client = state.plane.client();
    let (lease, heartbeat) = timings(client);
    // The worker's tasks whose queue it takes.
    let titles: Vec<String> = worker
        .profile
        .tasks
        .iter()
        .filter(|title| {
            registry::task_def(title).is_some_and(|def| worker.profile.queues.iter().any(|q| q == def.options().queue))
        })
        .cloned()
        .collect();
    let task_limits = titles
        .iter()
        .filter_map(|title| registry::task_def(title)?.options().concurrency.map(|n| (title.clone(), n)))
        .collect();
    let lingering = request.lingering.iter().map(|l| (l.task_title.clone(), l.count)).collect();
    let claim = store::ClaimRequest {
        worker_id: worker.id.clone(),
        limit: request.limit,
        lease,
        executors: worker.profile.executors.clone(),
        titles,
        task_limits,
        lingering,
        now: Timestamp::now(),
    };
    // Subscribed before the first look, so a run submitted between a look
    // and the wait is not missed.
    let mut events = client.subscribe();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(u64::from(request.wait_seconds));
    let (runs, waited) = loop {
        // Revoked while it waited: nothing more for it.
        if revoked(client, &digest).await? {
            return Err(revoked_meanwhile(&worker));
        }
        let leasing = tokio::time::Instant::now();
        let runs = client
            .store()
            .claim(store::ClaimRequest { now: Timestamp::now(), ..claim.clone() })
            .await
            .map_err(|e| ApiError::from(store_error(e)))?;
        // A revocation that committed before this claim took back nothing
        // of it: hand the runs back (not an attempt) rather than to a
        // worker that is told no more.
        if !runs.is_empty() && revoked(client, &digest).await? {
            for run in &runs {
                let report = store::Report {
                    id: run.id,
                    attempt: run.attempt,
                    worker_id: worker.id.clone(),
                    outcome: store::Outcome::Released,
                    now: Timestamp::now(),
                    progress: None,
                };
                match client.store().finish(report).await {
                    Ok(run) => client.publish(RunEvent::Status(Box::new(run))),
                    Err(error) => {
                        tracing::warn!(%error, run = %run.id, "taskflow: cannot hand back a revoked worker's claim")
                    }
                }
            }
            return Err(revoked_meanwhile(&worker));
        }
        let now = tokio::time::Instant::now();
        if !runs.is_empty() || now >= deadline {
            break (runs, leasing - arrived);
        }
        let recheck = (now + CLAIM_RECHECK).min(deadline);
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(recheck) => break,
                event = events.recv() => match event {
                    Ok(RunEvent::Status(run)) if run.status == taskflow_core::run::RunStatus::Pending => break,
                    Ok(_) => {}
                    // Missed events may have been pending runs: look.
                    Err(_) => break,
                },
            }
        }
    };
    for run in &runs {
        client.publish(RunEvent::Status(Box::new(run.clone())));
    }
    Ok(Json(ClaimReply {
        runs: runs.iter().map(leased_run).collect(),
        lease_seconds: lease.as_secs(),
        heartbeat_seconds: heartbeat.as_secs(),
        waited_ms: u64::try_from(waited.as_millis()).unwrap_or(u64::MAX),
    }))
}

/// `POST /api/v1/polling/update`: the worker's log lines, lease renewals
/// and at most one attempt's outcome, in that order.
#[utoipa::path(
    post,
    path = "/api/v1/polling/update",
    operation_id = "polling_update",
    tag = "workers",
    security(("worker" = [])),
    description = "Stores log lines of runs this worker executes or executed (those of other runs are refused, listed in `refused_logs`), renews the leases named (storing their progress) and answers those it no longer holds, and stores an attempt's outcome. Doubles as the heartbeat.",
    request_body = UpdateRequest,
    responses(
        (status = 200, description = "Stored", body = UpdateReply),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "No valid worker token", body = ErrorBody),
        (status = 404, description = "The reported run does not exist", body = ErrorBody),
        (status = 409, description = "The reported attempt is no longer this worker's (superseded, cancelled)", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "A field is wrong", body = ErrorBody),
        (status = 503, description = "The store is not reachable", body = ErrorBody),
    )
)]
pub(crate) async fn update(
    State(state): State<AppState>,
    Extension(worker): Extension<WorkerRecord>,
    ApiJson(request): ApiJson<UpdateRequest>,
) -> Result<Json<UpdateReply>, ApiError> {
    let client = state.plane.client();
    let store = client.store();
    let fail = |error: store::Error| ApiError::from(store_error(error));

    // Everything is read before anything is written: a field that does
    // not fit stores nothing.
    let lines = request
        .logs
        .into_iter()
        .enumerate()
        .map(|(i, line)| core_log_line(line).map_err(|e| invalid(&format!("logs[{i}].task_id"), e)))
        .collect::<Result<Vec<_>, _>>()?;
    let renewals = request
        .renewals
        .iter()
        .enumerate()
        .map(|(i, r)| core_renewal(r).map_err(|e| invalid(&format!("renewals[{i}].task_id"), e)))
        .collect::<Result<Vec<_>, _>>()?;
    let report = match request.report {
        Some(report) => {
            let last = report.progress.map(core_progress);
            let report = core_report(report, &worker.id, Timestamp::now()).map_err(|e| invalid("report.task_id", e))?;
            Some((report, last))
        }
        None => None,
    };

    // Lines only of runs this worker holds or held; another's are refused
    // one by one (the rest of the batch is stored), a deleted run's
    // dropped, as the store drops them.
    let mut refused_logs = Vec::new();
    let mut allowed = HashSet::new();
    for id in lines.iter().map(|line| line.0).collect::<HashSet<RunId>>() {
        if let Some(run) = store.get(id).await.map_err(fail)? {
            let held = run.worker_id.as_deref() == Some(worker.id.as_str())
                || run.attempts.iter().any(|a| a.worker_id.as_deref() == Some(worker.id.as_str()));
            if held {
                allowed.insert(id);
            } else {
                refused_logs.push(id.to_string());
            }
        }
    }
    if !refused_logs.is_empty() {
        tracing::warn!(worker = %worker.id, runs = ?refused_logs, "taskflow: refused log lines of runs a worker never held");
    }
    let lines: Vec<_> = lines.into_iter().filter(|line| allowed.contains(&line.0)).collect();
    let stored = if lines.is_empty() { Vec::new() } else { store.append_logs(lines).await.map_err(fail)? };
    for line in &stored {
        client.publish(RunEvent::Log(line.clone()));
    }

    let (lease, _) = timings(client);
    let lost = if renewals.is_empty() {
        Vec::new()
    } else {
        store.heartbeat(worker.id.clone(), renewals.clone(), Timestamp::now().plus(lease)).await.map_err(fail)?
    };
    let lost_set: HashSet<RunId> = lost.iter().copied().collect();
    let progressed: HashMap<RunId, _> =
        renewals.iter().filter_map(|r| Some((r.id, r.progress?))).filter(|(id, _)| !lost_set.contains(id)).collect();
    for (run_id, progress) in progressed {
        client.publish(RunEvent::Progress { run_id, progress });
    }

    let run = match report {
        None => None,
        Some((report, last)) => {
            let id = report.id;
            match store.finish(report).await {
                Ok(run) => {
                    if let Some(progress) = last {
                        client.publish(RunEvent::Progress { run_id: id, progress });
                    }
                    client.publish(RunEvent::Status(Box::new(run.clone())));
                    Some(wire_run(run))
                }
                Err(error @ store::Error::StaleAttempt { .. }) => {
                    return Err(ApiError::from(PlaneError::Conflict(error.to_string())));
                }
                Err(error) => return Err(fail(error)),
            }
        }
    };
    Ok(Json(UpdateReply {
        lost: lost.iter().map(RunId::to_string).collect(),
        logs: stored.into_iter().map(wire_line).collect(),
        refused_logs,
        run,
    }))
}

/// `POST /api/v1/polling/revoke`: an admin revokes a worker.
#[utoipa::path(
    post,
    path = "/api/v1/polling/revoke",
    operation_id = "revoke_worker",
    tag = "workers",
    security(("bearer" = [])),
    description = "Revokes a worker: its token is refused from its next call on (401), and the runs it holds go back to the queue at once as a new attempt (or fail, at their last).",
    request_body = RevokeRequest,
    responses(
        (status = 200, description = "Revoked (or already so)", body = RevokeReply),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "No such worker", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "A field is wrong", body = ErrorBody),
        (status = 503, description = "The store is not reachable", body = ErrorBody),
    )
)]
pub(crate) async fn revoke(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<RevokeRequest>,
) -> Result<Json<RevokeReply>, ApiError> {
    let taken_back = match revoke_worker(state.plane.client(), &request.worker_id).await {
        Ok(taken) => taken,
        Err(error @ store::Error::UnknownWorker(_)) => return Err(ApiError::not_found(error.to_string())),
        Err(error) => return Err(ApiError::from(store_error(error))),
    };
    Ok(Json(RevokeReply { worker_id: request.worker_id, taken_back }))
}

/// Revokes a worker and publishes the runs it held, back in the queue;
/// answers their ids. The API's route and the Workers page's button.
pub(crate) async fn revoke_worker(client: &Client, worker_id: &str) -> Result<Vec<String>, store::Error> {
    let taken = client.store().revoke_worker(worker_id.to_owned(), Timestamp::now()).await?;
    tracing::info!(worker = %worker_id, runs = taken.len(), "taskflow: a worker was revoked");
    let ids = taken.iter().map(|run| run.id.to_string()).collect();
    for run in taken {
        client.publish(RunEvent::Status(Box::new(run)));
    }
    Ok(ids)
}

/// A 422 naming the field at `path`.
pub(super) fn invalid(path: &str, message: String) -> ApiError {
    ApiError::from(PlaneError::Invalid {
        message: format!("{path}: {message}"),
        issues: vec![FieldIssue { path: path.to_owned(), message }],
    })
}
