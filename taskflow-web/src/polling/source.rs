//! The worker's side of the polling routes: [`HttpSource`], the
//! [`WorkSource`] of a remote worker, which claims, renews, reports and
//! stores log lines over HTTP; and [`register`], the one call made with a
//! provision token.
//!
//! The server's answers map onto the store's errors, so the worker treats
//! them as it treats its own store: an unreachable or failing server
//! (connection refused, a timeout, a 5xx) is
//! [`DatabaseErrorKind::Unavailable`], retried while the lease holds; a
//! 409 is [`store::Error::StaleAttempt`] and a 404 [`store::Error::NotFound`].

use std::time::Duration;

use reqwest::StatusCode;
use serde::Serialize;
use serde::de::DeserializeOwned;
use taskflow_core::Level;
use taskflow_core::registry::BoxFuture;
use taskflow_core::run::{Run, RunId, Timestamp};
use taskflow_core::store::{self, ClaimRequest, DatabaseError, DatabaseErrorKind, Renewal, Report, StoredLogLine};
use taskflow_core::wire::polling::{run_id, run_of_lease, run_of_wire, wire_log_line, wire_renewal, wire_report};
use taskflow_core::wire::{core_level, parse_rfc3339};
use taskflow_core::worker::{Claimed, WorkSource};
use taskflow_proto::polling::{self as wire, ClaimReply, UpdateReply, UpdateRequest};
use taskflow_proto::{RegisterRequest, Registered};

/// How long one claim waits on the server for a run. Short enough that a
/// stopping worker (which waits for its claim in flight) stops soon.
const CLAIM_WAIT_SECONDS: u32 = 5;

/// The body limit assumed until the server says (its default).
const DEFAULT_MAX_BODY: usize = 1024 * 1024;
/// No server limit is taken as smaller than this.
const MIN_MAX_BODY: usize = 4 * 1024;

/// How long any other request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A remote worker's source: the control plane at `server`, as the worker
/// whose token it holds.
#[derive(Clone)]
pub struct HttpSource {
    http: reqwest::Client,
    server: String,
    token: String,
    worker_id: String,
    /// Set when the server refuses the token (the worker was revoked).
    refused: std::sync::Arc<tokio::sync::watch::Sender<bool>>,
    /// The largest body the server takes ([`HttpSource::set_max_body_bytes`]).
    max_body: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl std::fmt::Debug for HttpSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token.
        f.debug_struct("HttpSource").field("server", &self.server).field("worker_id", &self.worker_id).finish()
    }
}

impl HttpSource {
    /// The source of worker `worker_id`, whose token is `token`, at
    /// `server` (`http://host:port`).
    pub fn new(server: &str, worker_id: &str, token: &str) -> HttpSource {
        HttpSource {
            http: reqwest::Client::new(),
            server: server.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            worker_id: worker_id.to_owned(),
            refused: std::sync::Arc::new(tokio::sync::watch::channel(false).0),
            max_body: std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(DEFAULT_MAX_BODY)),
        }
    }

    /// The largest request body the server takes (its discovery document's
    /// `max_body_bytes`): log batches are split to fit, and a result that
    /// cannot fit is reported as the attempt's failure.
    pub fn set_max_body_bytes(&self, bytes: usize) {
        self.max_body.store(bytes.max(MIN_MAX_BODY), std::sync::atomic::Ordering::Relaxed);
    }

    fn max_body(&self) -> usize {
        self.max_body.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Turns `true` once the server refuses this worker's token (401: it
    /// was revoked, or its registration is gone): the worker should stop.
    pub fn refused(&self) -> tokio::sync::watch::Receiver<bool> {
        self.refused.subscribe()
    }

    /// The discovery document (`GET /api/v1/polling/config`).
    pub async fn config(&self) -> store::Result<serde_json::Value> {
        let request = self.http.get(format!("{}/api/v1/polling/config", self.server)).bearer_auth(&self.token);
        answer(&self.server, request.timeout(REQUEST_TIMEOUT).send().await).await.map_err(Failure::into_store)
    }

    async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        timeout: Duration,
    ) -> Result<T, Failure> {
        let request =
            self.http.post(format!("{}{path}", self.server)).bearer_auth(&self.token).json(body).timeout(timeout);
        let answered = answer(&self.server, request.send().await).await;
        if let Err(Failure::Refused(StatusCode::UNAUTHORIZED, _)) = &answered {
            self.refused.send_replace(true);
        }
        answered
    }

    async fn update(&self, update: &UpdateRequest) -> Result<UpdateReply, Failure> {
        self.post("/api/v1/polling/update", update, REQUEST_TIMEOUT).await
    }
}

/// Registers a worker at `server` (`POST /api/v1/polling/register`).
pub async fn register(server: &str, request: &RegisterRequest) -> store::Result<Registered> {
    let server = server.trim_end_matches('/');
    let sent = reqwest::Client::new()
        .post(format!("{server}/api/v1/polling/register"))
        .json(request)
        .timeout(REQUEST_TIMEOUT)
        .send()
        .await;
    answer(server, sent).await.map_err(Failure::into_store)
}

/// Why a request to the server got no answer to use.
enum Failure {
    /// No answer: the server is down, unreachable or slow.
    Unreachable(String),
    /// An answer of this status, with the server's message.
    Refused(StatusCode, String),
}

impl Failure {
    /// The store error the failure stands for: worth retrying when the
    /// server is unreachable or failing.
    fn into_store(self) -> store::Error {
        let kind = match &self {
            Failure::Unreachable(_) => DatabaseErrorKind::Unavailable,
            Failure::Refused(status, _) if status.is_server_error() || *status == StatusCode::TOO_MANY_REQUESTS => {
                DatabaseErrorKind::Unavailable
            }
            Failure::Refused(..) => DatabaseErrorKind::Other,
        };
        let (Failure::Unreachable(message) | Failure::Refused(_, message)) = self;
        store::Error::Database(DatabaseError::new(kind, message))
    }
}

/// The body of a 2xx answer, or why there is none.
async fn answer<T: DeserializeOwned>(
    server: &str,
    sent: Result<reqwest::Response, reqwest::Error>,
) -> Result<T, Failure> {
    let response = sent.map_err(|e| Failure::Unreachable(format!("cannot reach the server at {server}: {e}")))?;
    let status = response.status();
    if status.is_success() {
        return response
            .json()
            .await
            .map_err(|e| Failure::Unreachable(format!("the server at {server} answered badly: {e}")));
    }
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    let message = body["error"]["message"].as_str().unwrap_or("(no message)").to_owned();
    Err(Failure::Refused(status, format!("the server at {server} answered {status}: {message}")))
}

/// A refused report as the worker's store would have refused it.
fn refused_report(failure: Failure, report: &Report) -> store::Error {
    match failure {
        Failure::Refused(StatusCode::CONFLICT, _) => {
            store::Error::StaleAttempt { id: report.id, attempt: report.attempt, worker_id: report.worker_id.clone() }
        }
        Failure::Refused(StatusCode::NOT_FOUND, _) => store::Error::NotFound(report.id),
        other => other.into_store(),
    }
}

fn malformed(server: &str, what: String) -> store::Error {
    store::Error::Database(DatabaseError::new(DatabaseErrorKind::Other, format!("the server at {server} sent {what}")))
}

impl WorkSource for HttpSource {
    fn claim(&self, request: ClaimRequest) -> BoxFuture<store::Result<Claimed>> {
        let source = self.clone();
        Box::pin(async move {
            let body = wire::ClaimRequest {
                limit: request.limit.min(wire::MAX_CLAIM),
                wait_seconds: CLAIM_WAIT_SECONDS,
                lingering: request
                    .lingering
                    .iter()
                    .map(|(task_title, count)| wire::Lingering { task_title: task_title.clone(), count: *count })
                    .collect(),
            };
            let wait = Duration::from_secs(u64::from(CLAIM_WAIT_SECONDS));
            let reply: ClaimReply = source
                .post("/api/v1/polling/claim", &body, wait + REQUEST_TIMEOUT)
                .await
                .map_err(Failure::into_store)?;
            let runs = reply
                .runs
                .into_iter()
                .map(|lease| run_of_lease(lease, &source.worker_id).map_err(|e| malformed(&source.server, e)))
                .collect::<store::Result<_>>()?;
            Ok(Claimed { runs, waited: Duration::from_millis(reply.waited_ms) })
        })
    }

    fn heartbeat(
        &self,
        _worker_id: String,
        held: Vec<Renewal>,
        _until: Timestamp,
    ) -> BoxFuture<store::Result<Vec<RunId>>> {
        // The server sets the lease in its own clock.
        let source = self.clone();
        Box::pin(async move {
            let update =
                UpdateRequest { renewals: held.iter().map(wire_renewal).collect(), ..UpdateRequest::default() };
            let reply = source.update(&update).await.map_err(Failure::into_store)?;
            reply.lost.iter().map(|id| run_id(id).map_err(|e| malformed(&source.server, e))).collect()
        })
    }

    fn finish(&self, report: Report) -> BoxFuture<store::Result<Run>> {
        let source = self.clone();
        Box::pin(async move {
            let mut update = UpdateRequest { report: Some(wire_report(&report)), ..UpdateRequest::default() };
            let size = serde_json::to_vec(&update).map_or(0, |body| body.len());
            let limit = source.max_body();
            if size > limit {
                // Sent as it is, it would be refused (413) and the attempt's
                // work lost: its failure says why instead.
                let error = taskflow_core::run::RunError {
                    kind: "result_too_large".to_owned(),
                    message: format!(
                        "the result is {size} bytes as JSON, more than the {limit} bytes the server takes in one \
                         request (its --max-body-bytes)"
                    ),
                };
                let failed = Report { outcome: store::Outcome::Failed { error, retry_at: None }, ..report.clone() };
                update.report = Some(wire_report(&failed));
            }
            let reply = source.update(&update).await.map_err(|e| refused_report(e, &report))?;
            let run = reply.run.ok_or_else(|| malformed(&source.server, "no run for a report".to_owned()))?;
            run_of_wire(run).map_err(|e| malformed(&source.server, e))
        })
    }

    fn append_logs(
        &self,
        lines: Vec<(RunId, Timestamp, Level, String)>,
    ) -> BoxFuture<store::Result<Vec<StoredLogLine>>> {
        let source = self.clone();
        Box::pin(async move {
            // Batches that fit the server's body limit, with room for the
            // JSON around each line; a line too long for one is cut.
            let budget = source.max_body() / 2;
            let mut batches: Vec<Vec<_>> = vec![Vec::new()];
            let mut used = 0;
            // A line's cost: its text as JSON, and 128 bytes for the rest.
            let cost = |message: &str| serde_json::to_string(message).map_or(message.len() * 6, |j| j.len()) + 128;
            for (id, at, level, mut message) in lines {
                if cost(&message) > budget / 2 {
                    // Cut to what fits even if every byte needed escaping.
                    let mut end = budget / 12;
                    while !message.is_char_boundary(end) {
                        end -= 1;
                    }
                    let total = message.len();
                    message.truncate(end);
                    message.push_str(&format!(" … [cut: the line was {total} bytes]"));
                }
                let cost = cost(&message);
                if used + cost > budget && !batches.last().is_some_and(Vec::is_empty) {
                    batches.push(Vec::new());
                    used = 0;
                }
                used += cost;
                batches.last_mut().expect("one batch at least").push(wire_log_line(id, at, level, message));
            }
            let mut stored_lines = Vec::new();
            for logs in batches.into_iter().filter(|batch| !batch.is_empty()) {
                let reply = source
                    .update(&UpdateRequest { logs, ..UpdateRequest::default() })
                    .await
                    .map_err(Failure::into_store)?;
                stored_lines.extend(reply.logs);
            }
            stored_lines
                .into_iter()
                .map(|line| {
                    Ok(StoredLogLine {
                        run_id: run_id(&line.task_id).map_err(|e| malformed(&source.server, e))?,
                        seq: line.seq,
                        at: Timestamp(parse_rfc3339(&line.at).unwrap_or(0)),
                        level: core_level(line.level),
                        message: line.message,
                    })
                })
                .collect()
        })
    }

    /// A remote worker reads no run back: the server publishes what it
    /// stored.
    fn get(&self, _id: RunId) -> BoxFuture<store::Result<Option<Run>>> {
        Box::pin(async { Ok(None) })
    }
}
