//! The pages and their handlers, each template struct beside the handler
//! that fills it. Every value reaches the HTML through askama's escaping;
//! state-changing forms carry the session's CSRF token.

use std::collections::HashMap;

use askama::Template;
use axum::Extension;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};

use super::form::{FormSpec, Row};
use super::{encode_component, html};
use crate::AppState;
use crate::auth::gate::ConnectInfoOpt;
use crate::auth::{Auth, Principal, TokenRequest};
use crate::body::{self, BodyLimits};
use crate::error::{ApiError, ApiPath};
use taskflow_proto::{FieldIssue, FunctionOptions, LogLine, RunStatus, RunSummary, SubmitRequest, TaskRun};

use crate::plane::{ListQuery, PlaneError};

/// The form field holding the CSRF token (a name no argument can have).
const CSRF_FIELD: &str = "tf:csrf";
/// The form field choosing the executor.
const EXECUTOR_FIELD: &str = "tf:executor";
/// Runs per history page.
const HISTORY_PAGE: u32 = 25;

pub(super) fn csrf_of(state: &AppState, principal: &Principal) -> String {
    principal.session.as_deref().map(|s| state.auth.csrf_token(s)).unwrap_or_default()
}

/// Why a posted form was refused, rendered as an error page.
#[derive(Debug)]
pub(super) struct Refused {
    status: StatusCode,
    heading: &'static str,
    message: String,
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        error_page(self.status, self.heading, &self.message)
    }
}

/// The posted fields, once the form is readable and, for a cookie session,
/// carries that session's CSRF token.
pub(super) fn posted(
    state: &AppState,
    principal: &Principal,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Result<HashMap<String, String>, Refused> {
    let fields: HashMap<String, String> = match form {
        Ok(Form(pairs)) => pairs.into_iter().collect(),
        Err(rejection) => {
            let error = ApiError::from(rejection);
            if error.status() == StatusCode::PAYLOAD_TOO_LARGE {
                // Said for a browser without the script, which checks first.
                let message = format!("{}. Go Back: your browser keeps what you typed.", capitalize(error.message()));
                return Err(Refused { status: error.status(), heading: "Form too large", message });
            }
            return Err(Refused { status: error.status(), heading: "Bad form", message: error.message().to_owned() });
        }
    };
    if let Some(session) = &principal.session {
        let token = fields.get(CSRF_FIELD).map(String::as_str).unwrap_or("");
        if !state.auth.check_csrf(session, token) {
            return Err(Refused {
                status: StatusCode::FORBIDDEN,
                heading: "Form expired",
                message: "This form's security token is missing or stale. Go back, reload the page and submit again."
                    .to_owned(),
            });
        }
    }
    // A bearer token is not sent by other sites on their own: no token needed.
    Ok(fields)
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    csrf: String,
    heading: &'a str,
    message: &'a str,
}

/// A page saying what went wrong.
pub(crate) fn error_page(status: StatusCode, heading: &str, message: &str) -> Response {
    html(status, ErrorPage { csrf: String::new(), heading, message }.render())
}

pub(super) fn plane_error_page(error: PlaneError) -> Response {
    let api = ApiError::from(error);
    let heading = match api.status() {
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::CONFLICT => "Not possible now",
        StatusCode::SERVICE_UNAVAILABLE => "Unavailable",
        StatusCode::UNPROCESSABLE_ENTITY => "Invalid",
        _ => "Error",
    };
    error_page(api.status(), heading, api.message())
}

struct TaskCard {
    title: String,
    description: String,
    signature: String,
    tags: Vec<String>,
    executor: String,
    search: String,
}

#[derive(Template)]
#[template(path = "tasks.html")]
struct TasksPage {
    csrf: String,
    query: String,
    tasks: Vec<TaskCard>,
}

/// `GET /`: the task list, filtered by `?q=` (the script filters as you
/// type).
pub(crate) async fn tasks(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let query = params.get("q").cloned().unwrap_or_default();
    let needle = query.to_lowercase();
    let tasks = state
        .plane
        .functions()
        .into_iter()
        .map(|f| {
            let search = format!("{} {} {}", f.title, f.description, f.tags.join(" ")).to_lowercase();
            TaskCard {
                title: f.title,
                description: f.description,
                signature: f.signature,
                tags: f.tags,
                executor: f.options.executor.to_string(),
                search,
            }
        })
        .filter(|card| card.search.contains(&needle))
        .collect();
    html(StatusCode::OK, TasksPage { csrf: csrf_of(&state, &principal), query, tasks }.render())
}

struct ExecutorChoice {
    name: String,
    label: String,
    available: bool,
}

#[derive(Template)]
#[template(path = "task_form.html")]
struct FormPage {
    csrf: String,
    title: String,
    description: String,
    signature: String,
    /// The task's options worth showing, as (term, value).
    options: Vec<(&'static str, String)>,
    rows: Vec<Row>,
    form_errors: Vec<String>,
    executors: Vec<ExecutorChoice>,
    default_executor: String,
    executor_error: String,
    recent: Vec<RunSummary>,
    /// The body limit, for the script to check a form against before
    /// sending it: in bytes, and as words.
    max_body_bytes: usize,
    /// See `max_body_bytes`.
    max_body_size: String,
}

struct FormState {
    values: HashMap<String, String>,
    issues: Vec<FieldIssue>,
    executor: Option<String>,
    message: Option<String>,
}

async fn render_form(
    state: &AppState,
    principal: &Principal,
    limits: Option<BodyLimits>,
    title: &str,
    status: StatusCode,
    form: Option<FormState>,
) -> Response {
    let Some(function) = state.plane.function(title) else {
        return error_page(StatusCode::NOT_FOUND, "Not found", &format!("There is no task `{title}`."));
    };
    let spec = FormSpec::new(&function.args_schema);
    let (values, mut issues, executor, message) = match form {
        Some(f) => (f.values, f.issues, f.executor, f.message),
        None => (spec.defaults(), Vec::new(), None, None),
    };
    let executor_error = match issues.iter().position(|i| i.path == "executor") {
        Some(i) => issues.remove(i).message,
        None => String::new(),
    };
    let (rows, mut form_errors) = spec.rows(&values, &issues);
    if let Some(message) = message.filter(|_| form_errors.is_empty() && issues.is_empty()) {
        form_errors.push(message);
    }
    let health = state.plane.health().await;
    let executors = health
        .executors
        .into_iter()
        .map(|e| ExecutorChoice {
            label: if e.available {
                capitalize(&e.name)
            } else {
                format!("{} (unavailable: {})", capitalize(&e.name), e.detail)
            },
            name: e.name,
            available: e.available,
        })
        .collect();
    let recent = state
        .plane
        .list(ListQuery { task_title: Some(title.to_owned()), limit: 5, ..ListQuery::default() })
        .await
        .map(|p| p.items)
        .unwrap_or_default();
    let page = FormPage {
        csrf: csrf_of(state, principal),
        options: option_terms(&function.options),
        title: function.title,
        description: function.description,
        signature: function.signature,
        rows,
        form_errors,
        executors,
        default_executor: executor.unwrap_or_else(|| function.options.executor.to_string()),
        executor_error,
        recent,
        max_body_bytes: limits.map_or(0, |l| l.max_bytes),
        max_body_size: limits.map(|l| body::size(l.max_bytes)).unwrap_or_default(),
    };
    html(status, page.render())
}

/// The options a task sets, for its form page: the executor always, the
/// others only when given (the retry delay when there are retries).
fn option_terms(options: &FunctionOptions) -> Vec<(&'static str, String)> {
    let mut terms = vec![("Executor", options.executor.to_string())];
    let mut add = |term, value: Option<String>| terms.extend(value.map(|v| (term, v)));
    add("Timeout", options.timeout_ms.map(duration));
    add("Retries", (options.retries > 0).then(|| options.retries.to_string()));
    add("Retry delay", (options.retries > 0).then(|| duration(options.retry_delay_ms)));
    add("Concurrency", options.concurrency.map(|c| format!("at most {c} at once")));
    add("Tags", (!options.tags.is_empty()).then(|| options.tags.join(", ")));
    add("Queue", (options.queue != "default").then(|| options.queue.clone()));
    add("Image", options.image.clone());
    add("Network", options.network.then(|| "yes".to_owned()));
    add("Memory", options.memory_bytes.map(bytes));
    add("CPUs", options.cpus.map(|c| c.to_string()));
    add("Processes", options.pids.map(|p| format!("at most {p}")));
    add("Environment", (!options.env.is_empty()).then(|| options.env.join(", ")));
    terms
}

/// `1500 ms`, `30 s`, `2 min`, `1 h`: the largest unit that is exact.
fn duration(ms: u64) -> String {
    match ms {
        ms if ms > 0 && ms % 3_600_000 == 0 => format!("{} h", ms / 3_600_000),
        ms if ms > 0 && ms % 60_000 == 0 => format!("{} min", ms / 60_000),
        ms if ms % 1000 == 0 => format!("{} s", ms / 1000),
        ms => format!("{ms} ms"),
    }
}

/// `256 MiB`, `1 GiB`: the largest binary unit that is exact.
fn bytes(n: u64) -> String {
    const GIB: u64 = 1 << 30;
    const MIB: u64 = 1 << 20;
    const KIB: u64 = 1 << 10;
    match n {
        n if n > 0 && n % GIB == 0 => format!("{} GiB", n / GIB),
        n if n > 0 && n % MIB == 0 => format!("{} MiB", n / MIB),
        n if n > 0 && n % KIB == 0 => format!("{} KiB", n / KIB),
        n => format!("{n} bytes"),
    }
}

fn capitalize(word: &str) -> String {
    let mut chars = word.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

/// `GET /functions/{title}`: the form, with the schema's defaults or, with
/// `?from=<task_id>`, that run's payload.
pub(crate) async fn task_form(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    limits: Option<Extension<BodyLimits>>,
    ApiPath(title): ApiPath<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let mut form = None;
    if let (Some(from), Some(function)) = (params.get("from"), state.plane.function(&title)) {
        if let Ok(run) = state.plane.get(from).await {
            let spec = FormSpec::new(&function.args_schema);
            form = Some(FormState {
                values: spec.values_of(&run.payload),
                issues: Vec::new(),
                executor: Some(run.executor.to_string()),
                message: None,
            });
        }
    }
    render_form(&state, &principal, limits.map(|l| l.0), &title, StatusCode::OK, form).await
}

/// `POST /functions/{title}`: submits the form; on success to the run's
/// page, otherwise the form again with each message beside its field.
pub(crate) async fn submit(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    limits: Option<Extension<BodyLimits>>,
    ApiPath(title): ApiPath<String>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let mut fields = match posted(&state, &principal, form) {
        Ok(fields) => fields,
        Err(refused) => return refused.into_response(),
    };
    let Some(function) = state.plane.function(&title) else {
        return error_page(StatusCode::NOT_FOUND, "Not found", &format!("There is no task `{title}`."));
    };
    fields.remove(CSRF_FIELD);
    let executor = fields.remove(EXECUTOR_FIELD).filter(|e| !e.is_empty());
    let spec = FormSpec::new(&function.args_schema);
    let again = |issues: Vec<FieldIssue>, message: Option<String>, fields: HashMap<String, String>| FormState {
        values: fields,
        issues,
        executor: executor.clone(),
        message,
    };
    let payload = match spec.payload(&fields) {
        Ok(payload) => payload,
        Err(issues) => {
            let form = again(issues, None, fields);
            return render_form(
                &state,
                &principal,
                limits.map(|l| l.0),
                &title,
                StatusCode::UNPROCESSABLE_ENTITY,
                Some(form),
            )
            .await;
        }
    };
    let mut request = SubmitRequest::new(title.clone(), payload);
    request.executor = executor.clone();
    // A click is a request for a run of its own.
    request.unique = false;
    match state.plane.submit(request).await {
        Ok(submitted) => Redirect::to(&format!("/runs/{}", submitted.task_id)).into_response(),
        Err(PlaneError::Invalid { message, issues }) => {
            let form = again(issues, Some(message), fields);
            render_form(&state, &principal, limits.map(|l| l.0), &title, StatusCode::UNPROCESSABLE_ENTITY, Some(form))
                .await
        }
        Err(error) => plane_error_page(error),
    }
}

#[derive(Template)]
#[template(path = "run.html")]
struct RunPage {
    csrf: String,
    run: TaskRun,
    started_at: String,
    finished_at: String,
    result: String,
    error: String,
    payload: String,
    logs: Vec<LogLine>,
    last_seq: u64,
    attempts: Vec<AttemptRow>,
}

/// One attempt as the run page shows it.
struct AttemptRow {
    number: u32,
    outcome: &'static str,
    worker: String,
    executor: &'static str,
    started_at: String,
    finished_at: String,
    error: String,
}

impl AttemptRow {
    fn of(attempt: &taskflow_proto::RunAttempt) -> AttemptRow {
        let dash = || "—".to_owned();
        AttemptRow {
            number: attempt.number,
            outcome: attempt.outcome.as_str(),
            worker: attempt.worker_id.clone().unwrap_or_else(dash),
            executor: attempt.executor.as_str(),
            started_at: attempt.started_at.clone().unwrap_or_else(dash),
            finished_at: attempt.finished_at.clone().unwrap_or_else(dash),
            error: attempt.error.as_ref().map(|e| format!("{}: {}", e.kind, e.message)).unwrap_or_default(),
        }
    }
}

/// `GET /runs/{task_id}`: the run; the script keeps it live.
pub(crate) async fn run(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiPath(task_id): ApiPath<String>,
) -> Response {
    let run = match state.plane.get(&task_id).await {
        Ok(run) => run,
        Err(error) => return plane_error_page(error),
    };
    let logs = state.plane.logs(&task_id, 0, crate::api::tasks::MAX_LOG_PAGE).await.unwrap_or_default();
    let pretty = |v: &serde_json::Value| serde_json::to_string_pretty(v).unwrap_or_default();
    let page = RunPage {
        csrf: csrf_of(&state, &principal),
        started_at: run.started_at.clone().unwrap_or_else(|| "—".to_owned()),
        finished_at: run.finished_at.clone().unwrap_or_else(|| "—".to_owned()),
        result: run.result.as_ref().map(pretty).unwrap_or_default(),
        error: run.error.as_ref().map(|e| format!("{}: {}", e.kind, e.message)).unwrap_or_default(),
        payload: pretty(&run.payload),
        last_seq: logs.last().map_or(0, |l| l.seq),
        attempts: run.attempts.iter().map(AttemptRow::of).collect(),
        logs,
        run,
    };
    html(StatusCode::OK, page.render())
}

/// `POST /runs/{task_id}/cancel`, then back to the run.
pub(crate) async fn cancel(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiPath(task_id): ApiPath<String>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    if let Err(refused) = posted(&state, &principal, form) {
        return refused.into_response();
    }
    match state.plane.cancel(&task_id).await {
        // Already final: the run page shows how it ended.
        Ok(_) | Err(PlaneError::Conflict(_)) => Redirect::to(&format!("/runs/{task_id}")).into_response(),
        Err(error) => plane_error_page(error),
    }
}

/// `POST /runs/{task_id}/again`: a new run with the same payload and
/// executor.
pub(crate) async fn again(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiPath(task_id): ApiPath<String>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    if let Err(refused) = posted(&state, &principal, form) {
        return refused.into_response();
    }
    let run = match state.plane.get(&task_id).await {
        Ok(run) => run,
        Err(error) => return plane_error_page(error),
    };
    let mut request = SubmitRequest::new(run.task_title, run.payload);
    request.executor = Some(run.executor.to_string());
    request.unique = false;
    match state.plane.submit(request).await {
        Ok(submitted) => Redirect::to(&format!("/runs/{}", submitted.task_id)).into_response(),
        Err(error) => plane_error_page(error),
    }
}

#[derive(Template)]
#[template(path = "runs.html")]
struct HistoryPage {
    csrf: String,
    statuses: Vec<&'static str>,
    status: String,
    titles: Vec<String>,
    task_title: String,
    total: u64,
    runs: Vec<RunSummary>,
    page: u32,
    pages: u32,
    prev: String,
    next: String,
}

/// `GET /runs`: the history, filtered and paginated.
pub(crate) async fn history(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let status = params.get("status").cloned().unwrap_or_default();
    let task_title = params.get("task_title").cloned().unwrap_or_default();
    let wanted = match status.as_str() {
        "" => None,
        word => match word.parse::<RunStatus>() {
            Ok(status) => Some(status),
            Err(_) => {
                return error_page(StatusCode::BAD_REQUEST, "Bad filter", &format!("There is no status `{status}`."));
            }
        },
    };
    let page = params.get("page").and_then(|p| p.parse::<u32>().ok()).unwrap_or(1).max(1);
    let query = ListQuery {
        statuses: wanted.into_iter().collect(),
        task_title: Some(task_title.clone()).filter(|t| !t.is_empty()),
        limit: HISTORY_PAGE,
        offset: (page - 1).saturating_mul(HISTORY_PAGE),
    };
    let found = match state.plane.list(query).await {
        Ok(found) => found,
        Err(error) => return plane_error_page(error),
    };
    let pages = u32::try_from(found.total.div_ceil(u64::from(HISTORY_PAGE))).unwrap_or(u32::MAX).max(1);
    let link = |page: u32| {
        format!("/runs?status={}&task_title={}&page={page}", encode_component(&status), encode_component(&task_title))
    };
    let view = HistoryPage {
        csrf: csrf_of(&state, &principal),
        statuses: RunStatus::ALL.iter().map(|s| s.as_str()).collect(),
        titles: state.plane.functions().into_iter().map(|f| f.title).collect(),
        total: found.total,
        runs: found.items,
        prev: if page > 1 { link(page - 1) } else { String::new() },
        next: if page < pages { link(page + 1) } else { String::new() },
        page,
        pages,
        status,
        task_title,
    };
    html(StatusCode::OK, view.render())
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    csrf: String,
    message: String,
    next: String,
}

/// Only paths of this site: never `//evil.example`, a full URL, or a path
/// a browser would read as one once it drops tabs, newlines and
/// backslashes (`/\t/evil.example`).
fn safe_next(next: Option<&String>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.bytes().any(|b| b < 0x20 || b == 0x7f || b == b'\\')
                && n.trim_start_matches('/').len() + 1 == n.len() =>
        {
            n.clone()
        }
        _ => "/".to_owned(),
    }
}

fn start_session(auth: &Auth, subject: &str, next: &str) -> Response {
    let mut response = Redirect::to(next).into_response();
    response.headers_mut().insert(header::SET_COOKIE, auth.session_cookie(subject));
    response
}

fn login_failed(message: &str, next: String) -> Response {
    html(StatusCode::UNAUTHORIZED, LoginPage { csrf: String::new(), message: message.to_owned(), next }.render())
}

/// `GET /login`: with `?token=` (the link `serve` prints) starts a session;
/// otherwise the login form.
pub(crate) async fn login_page(
    State(state): State<AppState>,
    ConnectInfoOpt(client): ConnectInfoOpt,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let next = safe_next(params.get("next"));
    let Some(token) = params.get("token").filter(|t| !t.is_empty()) else {
        return html(StatusCode::OK, LoginPage { csrf: String::new(), message: String::new(), next }.render());
    };
    if let Err(error) = state.auth.check_rate(client) {
        return login_failed(error.message(), next);
    }
    match state.auth.check_login(token) {
        Ok(subject) => start_session(&state.auth, &subject, &next),
        Err(error) => {
            state.auth.record_failure(client);
            login_failed(
                &format!("That login link does not work ({error}). `serve` prints a new one each start."),
                next,
            )
        }
    }
}

/// `POST /login`: a token (login link token, access token or API key) or a
/// user and password start a session.
pub(crate) async fn login(
    State(state): State<AppState>,
    ConnectInfoOpt(client): ConnectInfoOpt,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let anonymous = Principal { subject: String::new(), session: None };
    let fields = match posted(&state, &anonymous, form) {
        Ok(fields) => fields,
        Err(refused) => return refused.into_response(),
    };
    let next = safe_next(fields.get("next"));
    if let Err(error) = state.auth.check_rate(client) {
        return login_failed(error.message(), next);
    }
    let token = fields.get("token").map(|t| t.trim()).filter(|t| !t.is_empty());
    let subject = match token {
        Some(token) => state.auth.check_login(token).ok().or_else(|| state.auth.check_token(token)),
        None => state.auth.check_credentials(&TokenRequest {
            username: fields.get("username").cloned(),
            password: fields.get("password").cloned(),
            api_key: None,
        }),
    };
    match subject {
        Some(subject) => start_session(&state.auth, &subject, &next),
        None => {
            state.auth.record_failure(client);
            login_failed("Wrong token, user or password.", next)
        }
    }
}

/// `POST /logout`: ends the session.
pub(crate) async fn logout(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    if let Err(refused) = posted(&state, &principal, form) {
        return refused.into_response();
    }
    let mut response = Redirect::to("/login").into_response();
    response.headers_mut().insert(header::SET_COOKIE, Auth::clear_cookie());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_form_shows_the_options_a_task_sets() {
        let mut options = FunctionOptions {
            timeout_ms: None,
            retries: 0,
            retry_delay_ms: 1000,
            concurrency: None,
            executor: taskflow_proto::ExecutorKind::Thread,
            tags: Vec::new(),
            queue: "default".to_owned(),
            image: None,
            network: false,
            memory_bytes: None,
            cpus: None,
            pids: None,
            env: Vec::new(),
        };
        assert_eq!(option_terms(&options), [("Executor", "thread".to_owned())], "defaults are not shown");
        options = FunctionOptions {
            timeout_ms: Some(120_000),
            retries: 2,
            retry_delay_ms: 1500,
            concurrency: Some(4),
            executor: taskflow_proto::ExecutorKind::Docker,
            tags: vec!["image".to_owned(), "batch".to_owned()],
            queue: "gpu".to_owned(),
            image: Some("debian:bookworm-slim".to_owned()),
            network: true,
            memory_bytes: Some(256 << 20),
            cpus: Some(1.5),
            pids: Some(64),
            env: vec!["API_TOKEN".to_owned()],
        };
        let shown: Vec<String> = option_terms(&options).iter().map(|(t, v)| format!("{t}: {v}")).collect();
        assert_eq!(
            shown,
            [
                "Executor: docker",
                "Timeout: 2 min",
                "Retries: 2",
                "Retry delay: 1500 ms",
                "Concurrency: at most 4 at once",
                "Tags: image, batch",
                "Queue: gpu",
                "Image: debian:bookworm-slim",
                "Network: yes",
                "Memory: 256 MiB",
                "CPUs: 1.5",
                "Processes: at most 64",
                "Environment: API_TOKEN",
            ]
        );
        assert_eq!((duration(0), duration(5000), duration(3_600_000)), ("0 s".into(), "5 s".into(), "1 h".into()));
        assert_eq!((bytes(1 << 30), bytes(1000)), ("1 GiB".into(), "1000 bytes".into()));
    }

    #[test]
    fn next_stays_on_this_site() {
        let next = |n: &str| safe_next(Some(&n.to_owned()));
        assert_eq!(next("/runs?status=failed"), "/runs?status=failed");
        assert_eq!(next("/"), "/");
        for outside in
            ["//evil.example", "/\\evil.example", "/\t/evil.example", "/\n", "https://evil.example", "evil", "/\u{7f}"]
        {
            assert_eq!(next(outside), "/", "{outside:?}");
        }
        assert_eq!(safe_next(None), "/");
    }
}
