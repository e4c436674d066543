//! [`ApiError`]: the one error type at the HTTP edge. Every refusal renders
//! as `{"error": {"code": "...", "message": "...", "details": ...}}` with
//! the status that says whose fault it is; a server fault says only
//! "internal error" and logs the detail.

use axum::extract::rejection::{FormRejection, JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use utoipa::openapi::path::ParameterIn;
use utoipa::{IntoParams, ToSchema};

use taskflow_proto::FieldIssue;

use crate::plane::PlaneError;

/// A refused or failed request.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    details: Option<Value>,
}

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable word: `bad_request`, `unauthorized`, `not_found`,
    /// `conflict`, `payload_too_large`, `unsupported_media_type`,
    /// `invalid`, `too_many_requests`, `unavailable`, `store_full`,
    /// `internal`.
    pub code: String,
    /// What to fix, in one sentence.
    pub message: String,
    /// For `invalid`: `{"issues": [{"path": "payload.b", "message": "..."}]}`.
    pub details: Option<Value>,
}

impl ApiError {
    /// An error with this status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), details: None }
    }

    /// 400: the request is malformed.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 401: no valid credentials.
    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 403: authenticated, but not allowed.
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 404: no such route, task or run.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 422 with the issues at their paths.
    pub fn invalid(message: impl Into<String>, issues: &[FieldIssue]) -> ApiError {
        let mut error = ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message);
        error.details = Some(json!({ "issues": issues }));
        error
    }

    /// 429: too many failed attempts.
    pub fn too_many_requests(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too_many_requests", message)
    }

    /// 500: a fault of the server; `detail` is logged, never sent.
    pub fn internal(detail: impl std::fmt::Display) -> ApiError {
        tracing::error!(%detail, "taskflow web: internal error");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error")
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The stable code.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The issues of a 422, if any.
    pub fn issues(&self) -> Vec<FieldIssue> {
        self.details
            .as_ref()
            .and_then(|d| d.get("issues"))
            .and_then(|i| serde_json::from_value(i.clone()).ok())
            .unwrap_or_default()
    }
}

/// What a 503 asks a client to wait before trying again, in seconds: the
/// store is reconnecting, or a lock is about to be let go.
pub const RETRY_AFTER_SECONDS: u32 = 1;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({
            "error": { "code": self.code, "message": self.message, "details": self.details }
        });
        let mut response = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, RETRY_AFTER_SECONDS.into());
        }
        response
    }
}

impl From<PlaneError> for ApiError {
    fn from(error: PlaneError) -> Self {
        match error {
            PlaneError::UnknownTask(_) | PlaneError::NotFound(_) => ApiError::not_found(error.to_string()),
            PlaneError::Invalid { message, issues } => ApiError::invalid(message, &issues),
            PlaneError::Conflict(message) => ApiError::new(StatusCode::CONFLICT, "conflict", message),
            PlaneError::Unauthorized(message) => ApiError::unauthorized(message),
            PlaneError::Unavailable(message) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message),
            PlaneError::StoreFull(message) => ApiError::new(StatusCode::INSUFFICIENT_STORAGE, "store_full", message),
            PlaneError::Corrupt(message) => {
                tracing::error!(%message, "taskflow web: stored data is damaged");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
            }
            PlaneError::Internal(detail) => ApiError::internal(detail),
        }
    }
}

/// Malformed JSON is 400, a wrong content type 415, a body over the limit
/// 413 (naming it), a body of the wrong shape 422.
impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        if let Some(error) = body_limit_error(&rejection) {
            return error;
        }
        match rejection {
            JsonRejection::JsonDataError(e) => {
                let text = e.body_text();
                let detail = text.split_once("target type: ").map_or(text.as_str(), |(_, rest)| rest);
                // `serde_path_to_error` puts the field's path first: `task_title: invalid type…`.
                let (path, message) = match detail.split_once(": ") {
                    Some((path, message)) if !path.contains(' ') && path != "." => (path.to_owned(), message),
                    _ => ("body".to_owned(), detail),
                };
                ApiError::invalid(
                    format!("the body does not have the expected shape: {detail}"),
                    &[FieldIssue { path, message: message.to_owned() }],
                )
            }
            JsonRejection::JsonSyntaxError(e) => {
                ApiError::bad_request(format!("the body is not valid JSON: {}", json_syntax(&e)))
            }
            JsonRejection::MissingJsonContentType(_) => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON with `Content-Type: application/json`",
            ),
            other => from_status(other.status(), other.body_text()),
        }
    }
}

/// What is wrong with a body that is not JSON, in the parser's words
/// without the framework's (`Failed to parse the request body as JSON`)
/// or the path of the value it was in when it stopped (`payload.?`).
fn json_syntax(error: &(dyn std::error::Error + 'static)) -> String {
    let mut source = Some(error);
    while let Some(error) = source {
        let json = error.downcast_ref::<serde_json::Error>().or_else(|| {
            error.downcast_ref::<serde_path_to_error::Error<serde_json::Error>>().map(serde_path_to_error::Error::inner)
        });
        if let Some(json) = json {
            if json.is_eof() {
                return format!("it ends early, at line {} column {} (was it cut short?)", json.line(), json.column());
            }
            return json.to_string();
        }
        source = error.source();
    }
    error.to_string()
}

impl From<FormRejection> for ApiError {
    fn from(rejection: FormRejection) -> Self {
        if let Some(error) = body_limit_error(&rejection) {
            return error;
        }
        match rejection {
            FormRejection::InvalidFormContentType(_) => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the form as `application/x-www-form-urlencoded`",
            ),
            other => from_status(other.status(), other.body_text()),
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::bad_request(format!("bad path: {}", rejection.body_text()))
    }
}

/// A body that broke one of `body.rs`'s limits, found among the rejection's
/// causes: 413 naming the limit, or 400 for a body too slow.
fn body_limit_error(rejection: &dyn std::error::Error) -> Option<ApiError> {
    let mut cause = rejection.source();
    while let Some(error) = cause {
        if let Some(too_large) = error.downcast_ref::<crate::body::TooLarge>() {
            return Some(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", too_large.to_string()));
        }
        if let Some(too_slow) = error.downcast_ref::<crate::body::TooSlow>() {
            return Some(ApiError::bad_request(too_slow.to_string()));
        }
        cause = error.source();
    }
    None
}

/// For handlers that take `axum::extract::Query` themselves; [`ApiQuery`]
/// says more.
impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::bad_request(format!("bad query string: {}", rejection.body_text()))
    }
}

/// An axum rejection we do not name: keep its status, never a 500 for a
/// client's mistake.
fn from_status(status: StatusCode, text: String) -> ApiError {
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(status, "payload_too_large", "the body is larger than the server accepts")
        }
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::new(status, "unsupported_media_type", text),
        StatusCode::UNPROCESSABLE_ENTITY => ApiError::invalid(text.clone(), &[]),
        s if s.is_server_error() => ApiError::internal(text),
        _ => ApiError::bad_request(text),
    }
}

/// `axum::Json` whose rejection is an [`ApiError`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let axum::Json(value) = axum::Json::<T>::from_request(req, state).await?;
        Ok(ApiJson(value))
    }
}

impl<T: Serialize> IntoResponse for ApiJson<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// A query string read into `T`, whose parameters (`IntoParams`, as the
/// OpenAPI document lists them) name what each takes: a mistake is a 400
/// naming the parameter and what it accepts, in our words, not serde's or
/// axum's.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + IntoParams> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parse_query(parts.uri.query().unwrap_or_default()).map(ApiQuery)
    }
}

/// Reads `query` into `T`, or says which parameter is wrong and what it
/// takes (its description in the OpenAPI document).
fn parse_query<T: DeserializeOwned + IntoParams>(query: &str) -> Result<T, ApiError> {
    let params = T::into_params(|| Some(ParameterIn::Query));
    let takes = || match params.iter().map(|p| format!("`{}`", p.name)).collect::<Vec<_>>() {
        names if names.is_empty() => "this route takes no query parameters".to_owned(),
        names => format!("this route takes {}", names.join(", ")),
    };
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    for (i, (name, _)) in pairs.iter().enumerate() {
        if !params.iter().any(|p| p.name == *name) {
            return Err(ApiError::bad_request(format!("unknown query parameter `{name}`; {}", takes())));
        }
        if pairs[..i].iter().any(|(earlier, _)| earlier == name) {
            return Err(ApiError::bad_request(format!("query parameter `{name}` is given twice; give it once")));
        }
    }
    let deserializer = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let path = error.path().to_string();
        match (params.iter().find(|p| p.name == path), pairs.iter().find(|(name, _)| *name == path)) {
            (Some(param), Some((name, value))) => {
                // The doc comment, as one line: `The page size, …` → `the page size, …`.
                let what = param.description.as_deref().unwrap_or("another value");
                let what = what.split_whitespace().collect::<Vec<_>>().join(" ");
                let mut what = what.trim_end_matches('.').chars();
                let first = what.next().map(|c| c.to_lowercase().to_string()).unwrap_or_default();
                ApiError::bad_request(format!(
                    "query parameter `{name}={value}` is not accepted; `{name}` takes {first}{}",
                    what.as_str()
                ))
            }
            _ => ApiError::bad_request(format!("bad query string `{query}`: {}; {}", error.inner(), takes())),
        }
    })
}

/// `axum::extract::Path` whose rejection is an [`ApiError`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(value) = axum::extract::Path::<T>::from_request_parts(parts, state).await?;
        Ok(ApiPath(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_body_that_is_not_json_says_where_in_the_parsers_words() {
        use axum::extract::FromRequest;
        let parse = |body: &'static str| async move {
            let request = axum::http::Request::builder()
                .method("POST")
                .header("content-type", "application/json")
                .body(axum::body::Body::from(body))
                .unwrap();
            let rejection = axum::Json::<Value>::from_request(request, &()).await.unwrap_err();
            ApiError::from(rejection).message().to_owned()
        };
        assert_eq!(
            parse(r#"{"task_title": "t", "payload": {"a": 1"#).await,
            "the body is not valid JSON: it ends early, at line 1 column 38 (was it cut short?)"
        );
        assert_eq!(
            parse(r#"{"payload": {"a": ?}}"#).await,
            "the body is not valid JSON: expected value at line 1 column 19"
        );
    }

    #[test]
    fn plane_errors_map_to_their_status() {
        let cases = [
            (PlaneError::UnknownTask("x".into()), StatusCode::NOT_FOUND),
            (PlaneError::NotFound("x".into()), StatusCode::NOT_FOUND),
            (PlaneError::Invalid { message: "m".into(), issues: vec![] }, StatusCode::UNPROCESSABLE_ENTITY),
            (PlaneError::Conflict("c".into()), StatusCode::CONFLICT),
            (PlaneError::Unavailable("u".into()), StatusCode::SERVICE_UNAVAILABLE),
            (PlaneError::StoreFull("f".into()), StatusCode::INSUFFICIENT_STORAGE),
            (PlaneError::Corrupt("run x is damaged".into()), StatusCode::INTERNAL_SERVER_ERROR),
            (PlaneError::Internal("secret detail".into()), StatusCode::INTERNAL_SERVER_ERROR),
        ];
        for (error, status) in cases {
            assert_eq!(ApiError::from(error).status(), status);
        }
    }

    #[test]
    fn only_an_unavailable_store_says_when_to_retry() {
        let unavailable = ApiError::from(PlaneError::Unavailable("try again".into())).into_response();
        assert_eq!(unavailable.headers()[axum::http::header::RETRY_AFTER], RETRY_AFTER_SECONDS.to_string());
        for error in [PlaneError::StoreFull("f".into()), PlaneError::Corrupt("run x is damaged".into())] {
            let response = ApiError::from(error).into_response();
            assert!(!response.headers().contains_key(axum::http::header::RETRY_AFTER), "{:?}", response.status());
        }
    }

    #[test]
    fn a_damaged_run_is_named_not_hidden() {
        let error = ApiError::from(PlaneError::Corrupt("the stored record of run 42 is damaged".into()));
        assert_eq!((error.code(), error.message()), ("internal", "the stored record of run 42 is damaged"));
    }

    #[test]
    fn a_bad_query_names_the_parameter_and_what_it_takes() {
        use crate::api::tasks::ListParams;
        let message = |query: &str| parse_query::<ListParams>(query).map(|_| ()).unwrap_err().message().to_owned();
        assert_eq!(
            message("limit=abc"),
            "query parameter `limit=abc` is not accepted; `limit` takes the page size, an integer from 1 to 500 (default 50)"
        );
        let statuses = |query: &str| parse_query::<ListParams>(query).unwrap().into_query().map(|q| q.statuses);
        assert_eq!(
            statuses("task_title=x&status=completed,failed,completed").unwrap(),
            [taskflow_proto::RunStatus::Completed, taskflow_proto::RunStatus::Failed]
        );
        assert_eq!(
            statuses("status=completed,dune").unwrap_err().message(),
            "query parameter `status=dune` is not accepted; `status` takes pending, running, completed, failed or \
             cancelled, several comma-separated"
        );
        assert!(
            message("offset=-1").starts_with("query parameter `offset=-1` is not accepted; `offset` takes how many")
        );
        assert_eq!(
            message("bogus=1"),
            "unknown query parameter `bogus`; this route takes `status`, `task_title`, `limit`, `offset`"
        );
        assert_eq!(message("limit=1&limit=2"), "query parameter `limit` is given twice; give it once");
        let params = parse_query::<ListParams>("status=failed&limit=5").unwrap();
        assert_eq!((params.status, params.limit), (Some("failed".to_owned()), Some(5)));
    }

    #[test]
    fn a_missing_run_is_a_run() {
        let error = ApiError::from(PlaneError::NotFound("42".into()));
        assert_eq!(error.message(), "no run with id `42`");
    }

    #[test]
    fn internal_errors_hide_their_detail() {
        let error = ApiError::from(PlaneError::Internal("SELECT * FROM runs failed".into()));
        assert_eq!(error.message(), "internal error");
    }
}
