//! The Workers page (`/workers`): each registered remote worker with its
//! state, what it runs, how many runs it holds now, and a Revoke button.

use std::collections::HashMap;

use askama::Template;
use axum::Extension;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use taskflow_core::run::{RunStatus, Timestamp};
use taskflow_core::store::{self, RunFilter};
use taskflow_proto::WorkerInfo;

use super::html;
use super::pages::{csrf_of, error_page, posted};
use crate::AppState;
use crate::auth::Principal;
use crate::error::ApiPath;

/// A worker as the page shows it.
struct WorkerRow {
    info: WorkerInfo,
    state: &'static str,
    running: usize,
}

#[derive(Template)]
#[template(path = "workers.html")]
struct WorkersPage {
    csrf: String,
    workers: Vec<WorkerRow>,
    program: &'static str,
    server: String,
}

/// The most running runs counted per look (the page says how many each
/// worker holds).
const RUNNING_LOOKED_AT: u32 = 500;

/// `GET /workers`.
pub(crate) async fn workers(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
) -> Response {
    let client = state.plane.client();
    let (workers, running) = match (client.store().workers().await, running_by_worker(&state).await) {
        (Ok(workers), Ok(running)) => (workers, running),
        (Err(error), _) | (_, Err(error)) => {
            tracing::warn!(%error, "taskflow web: cannot list workers");
            return error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Unavailable",
                "The store is not reachable; try again shortly.",
            );
        }
    };
    let lease = client.engine().map_or(std::time::Duration::from_secs(30), |engine| engine.config().lease);
    let now = Timestamp::now();
    let rows = workers
        .into_iter()
        .map(|worker| {
            let running = running.get(&worker.id).copied().unwrap_or(0);
            let info = crate::polling::worker_info(worker, now, lease);
            let state = match info.state {
                taskflow_proto::WorkerState::Active => "active",
                taskflow_proto::WorkerState::Lost => "lost",
                taskflow_proto::WorkerState::Revoked => "revoked",
            };
            WorkerRow { info, state, running }
        })
        .collect();
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1:8000");
    let page = WorkersPage {
        csrf: csrf_of(&state, &principal),
        workers: rows,
        program: "app",
        server: format!("http://{host}"),
    };
    html(StatusCode::OK, page.render())
}

/// How many running runs each worker holds.
async fn running_by_worker(state: &AppState) -> Result<HashMap<String, usize>, store::Error> {
    let mut filter = RunFilter::default();
    filter.statuses = vec![RunStatus::Running];
    filter.limit = Some(RUNNING_LOOKED_AT);
    let page = state.plane.client().store().list(filter).await?;
    let mut running = HashMap::new();
    for run in page.items {
        if let Some(worker) = run.worker_id {
            *running.entry(worker).or_insert(0) += 1;
        }
    }
    Ok(running)
}

/// `POST /workers/{worker_id}/revoke`: the page's Revoke button.
pub(crate) async fn revoke(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiPath(worker_id): ApiPath<String>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    if let Err(refused) = posted(&state, &principal, form) {
        return refused.into_response();
    }
    match crate::polling::work::revoke_worker(state.plane.client(), &worker_id).await {
        Ok(_) => Redirect::to("/workers").into_response(),
        Err(store::Error::UnknownWorker(_)) => {
            error_page(StatusCode::NOT_FOUND, "Not found", &format!("There is no worker `{worker_id}`."))
        }
        Err(error) => {
            tracing::warn!(%error, "taskflow web: cannot revoke a worker");
            error_page(StatusCode::SERVICE_UNAVAILABLE, "Unavailable", "The store is not reachable; try again shortly.")
        }
    }
}
