//! WebSockets: `/api/v1/tasks/{task_id}/ws` streams one run — its status
//! now, its stored log, then every change and line as it happens — and
//! `/api/v1/events/ws` every run's events. Messages are [`Event`]s as JSON.

use axum::Router;
use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade, rejection::WebSocketUpgradeRejection};
use axum::response::Response;
use axum::routing::get;
use tokio::sync::broadcast::Receiver;
use tokio::sync::broadcast::error::RecvError;

use crate::AppState;
use crate::error::{ApiError, ApiPath, ErrorBody};
use taskflow_proto::{Event, TaskRun};

/// How many stored lines one catch-up read takes.
const LOG_PAGE: u32 = 1000;
/// Clients have nothing to say on these sockets but pings and closes.
const MAX_CLIENT_MESSAGE: usize = 4096;

fn upgrade(ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>) -> Result<WebSocketUpgrade, ApiError> {
    ws.map_err(|rejection| ApiError::bad_request(format!("this route speaks WebSocket: {rejection}")))
}

/// `GET /api/v1/tasks/{task_id}/ws`
#[utoipa::path(
    get,
    path = "/api/v1/tasks/{task_id}/ws",
    operation_id = "follow_task",
    tag = "tasks",
    security(("bearer" = [])),
    params(("task_id" = String, Path, description = "The run's id")),
    responses(
        (status = 101, description = "A WebSocket of the run's events: its status now, its stored log lines, then every change as JSON `Event`s"),
        (status = 400, description = "Not a WebSocket request", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "No such run", body = ErrorBody),
    )
)]
pub(crate) async fn task_ws(
    State(state): State<AppState>,
    ApiPath(task_id): ApiPath<String>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let ws = upgrade(ws)?.max_message_size(MAX_CLIENT_MESSAGE);
    // Subscribed before the run is read, so no change falls in between.
    let events = state.plane.subscribe();
    let run = state.plane.get(&task_id).await?;
    Ok(ws.on_upgrade(move |socket| follow_run(state, run, events, socket)))
}

/// `GET /api/v1/events/ws`
#[utoipa::path(
    get,
    path = "/api/v1/events/ws",
    operation_id = "follow_all_tasks",
    tag = "tasks",
    security(("bearer" = [])),
    responses(
        (status = 101, description = "A WebSocket of every run's events, as JSON `Event`s"),
        (status = 400, description = "Not a WebSocket request", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
    )
)]
pub(crate) async fn events_ws(
    State(state): State<AppState>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let events = state.plane.subscribe();
    Ok(upgrade(ws)?.max_message_size(MAX_CLIENT_MESSAGE).on_upgrade(move |socket| follow_all(events, socket)))
}

async fn send(socket: &mut WebSocket, event: &Event) -> bool {
    match serde_json::to_string(event) {
        Ok(text) => socket.send(Message::Text(text.into())).await.is_ok(),
        Err(_) => true,
    }
}

/// Sends the run as it is and its log lines after `after`; returns the last
/// sequence number sent, or `None` when the client is gone.
async fn catch_up(state: &AppState, socket: &mut WebSocket, run: TaskRun, mut after: u64) -> Option<u64> {
    let task_id = run.task_id.clone();
    if !send(socket, &Event::Status { task: Box::new(run) }).await {
        return None;
    }
    loop {
        let lines = state.plane.logs(&task_id, after, LOG_PAGE).await.unwrap_or_default();
        let full = lines.len() == LOG_PAGE as usize;
        for line in lines {
            after = line.seq;
            if !send(socket, &Event::Log { line }).await {
                return None;
            }
        }
        if !full {
            return Some(after);
        }
    }
}

async fn follow_run(state: AppState, run: TaskRun, mut events: Receiver<Event>, mut socket: WebSocket) {
    // Subscribed before the catch-up read, so nothing falls in between;
    // lines the read already sent are skipped by sequence number.
    let task_id = run.task_id.clone();
    let Some(mut last_seq) = catch_up(&state, &mut socket, run, 0).await else { return };
    loop {
        tokio::select! {
            received = events.recv() => match received {
                Ok(event) if event.task_id() == task_id => {
                    if let Event::Log { line } = &event {
                        if line.seq <= last_seq {
                            continue;
                        }
                        last_seq = line.seq;
                    }
                    let deleted = matches!(event, Event::Deleted { .. });
                    if !send(&mut socket, &event).await || deleted {
                        return;
                    }
                }
                Ok(Event::Resync) | Err(RecvError::Lagged(_)) => {
                    // Missed events: read the run and its new lines again.
                    let Ok(run) = state.plane.get(&task_id).await else { return };
                    match catch_up(&state, &mut socket, run, last_seq).await {
                        Some(seq) => last_seq = seq,
                        None => return,
                    }
                }
                Ok(_) => {}
                Err(RecvError::Closed) => return,
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

async fn follow_all(mut events: Receiver<Event>, mut socket: WebSocket) {
    loop {
        tokio::select! {
            received = events.recv() => match received {
                Ok(event) => {
                    if !send(&mut socket, &event).await {
                        return;
                    }
                }
                // Tell the client it missed events; it re-reads.
                Err(RecvError::Lagged(_)) => {
                    if !send(&mut socket, &Event::Resync).await {
                        return;
                    }
                }
                Err(RecvError::Closed) => return,
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

/// The WebSocket routes.
pub(crate) fn router() -> Router<AppState> {
    Router::new().route("/api/v1/tasks/{task_id}/ws", get(task_ws)).route("/api/v1/events/ws", get(events_ws))
}
