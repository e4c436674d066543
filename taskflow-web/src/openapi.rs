//! `GET /api/v1/openapi.json`: the OpenAPI 3.1 document of every route,
//! generated from the handlers' `#[utoipa::path]` annotations and the wire
//! types, so it cannot drift from the code.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use crate::AppState;
use crate::error::ErrorBody;

#[derive(OpenApi)]
#[openapi(
    info(title = "TaskFlow", description = "Run tasks and watch them: the control plane's REST API."),
    paths(
        crate::health,
        crate::auth::routes::token,
        crate::auth::routes::refresh,
        crate::api::functions::list,
        crate::api::functions::show,
        crate::api::functions::call,
        crate::api::tasks::submit,
        crate::api::tasks::list,
        crate::api::tasks::show,
        crate::api::tasks::download,
        crate::api::tasks::logs,
        crate::api::tasks::cancel,
        crate::api::tasks::delete,
        crate::api::echo::echo,
        crate::ws::task_ws,
        crate::ws::events_ws,
        crate::polling::register,
        crate::polling::work::config,
        crate::polling::work::statuses,
        crate::polling::work::claim,
        crate::polling::work::update,
        crate::polling::work::revoke,
        crate::polling::list,
        openapi_json,
    ),
    components(schemas(taskflow_proto::Event, taskflow_proto::LogLine)),
    modifiers(&BearerAuth),
    tags(
        (name = "functions", description = "The tasks this server runs"),
        (name = "tasks", description = "Runs of tasks"),
        (name = "auth", description = "Tokens"),
        (name = "workers", description = "Remote workers"),
        (name = "health", description = "Liveness"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        );
        components.add_security_scheme(
            "worker",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("tfw_ worker token")
                    .description(Some("The `worker_token` a registration answered"))
                    .build(),
            ),
        );
    }
}

/// The OpenAPI document of the routes, for any set of tasks.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc
}

/// The document of a server with these tasks: the routes, plus one
/// `POST /api/v1/functions/<title>/call` per task whose request body is the
/// task's own argument schema, so clients and fuzzers know each payload.
///
/// The generic `{title}` call and the submit body are replaced by what each
/// task takes — a payload that fits the document then fits the server — and
/// `executor` lists the executors this server can use now (`available`).
pub fn document_for(functions: &[taskflow_proto::Function], available: &[String]) -> Value {
    let mut doc = serde_json::to_value(document()).unwrap_or_default();
    let generic = doc["paths"]["/api/v1/functions/{title}/call"]["post"].clone();
    if let Some(Value::Object(paths)) = doc.get_mut("paths") {
        paths.remove("/api/v1/functions/{title}/call");
    }
    doc["components"]["schemas"]["ExecutorName"]["enum"] = json!(available);
    let submit = doc["components"]["schemas"]["SubmitRequest"].clone();
    let mut variants = Vec::new();
    for function in functions {
        let mut operation = generic.clone();
        let prefix = component_name(&function.title);
        let (schema, defs) = lift_defs(&function.args_schema, &prefix);
        for (name, def) in defs {
            doc["components"]["schemas"][name] = def;
        }
        operation["operationId"] = json!(format!("call_{}", function.title));
        operation["summary"] = json!(function.description);
        operation["description"] =
            json!(format!("`{}`: submits the body as the payload and waits.", function.signature));
        operation["requestBody"] = json!({
            "required": true,
            "content": {"application/json": {"schema": schema.clone()}}
        });
        // The submit of this task: its title, its payload, the options.
        let mut variant = submit.clone();
        variant["description"] = json!(format!("A run of `{}`.", function.title));
        variant["properties"]["task_title"] = json!({"type": "string", "const": function.title});
        variant["properties"]["payload"] = schema.clone();
        let needs_payload = schema.get("required").and_then(Value::as_array).is_some_and(|r| !r.is_empty());
        if needs_payload {
            variant["required"] = json!(["task_title", "payload"]);
        }
        variants.push(variant);
        if let Some(Value::Array(params)) = operation.get_mut("parameters") {
            params.retain(|p| p["name"] != "title");
        }
        doc["paths"][format!("/api/v1/functions/{}/call", function.title)] = json!({ "post": operation });
    }
    if !variants.is_empty() {
        doc["paths"]["/api/v1/tasks"]["post"]["requestBody"]["content"]["application/json"]["schema"] =
            json!({ "oneOf": variants });
    }
    doc
}

/// A component name from a title (`a.b-c` → `a_b_c`).
fn component_name(title: &str) -> String {
    title.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect()
}

/// The schema with its `$defs` moved out (to become components named
/// `<prefix>.<name>`) and its references rewritten to them.
fn lift_defs(schema: &Value, prefix: &str) -> (Value, Vec<(String, Value)>) {
    let mut schema = schema.clone();
    let mut defs = Vec::new();
    if let Value::Object(map) = &mut schema {
        map.remove("$schema");
        if let Some(Value::Object(found)) = map.remove("$defs") {
            defs = found.into_iter().map(|(name, def)| (format!("{prefix}.{name}"), def)).collect();
        }
    }
    let rewrite = |value: &mut Value| rewrite_refs(value, prefix);
    rewrite(&mut schema);
    for (_, def) in &mut defs {
        rewrite(def);
    }
    (schema, defs)
}

fn rewrite_refs(value: &mut Value, prefix: &str) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(target)) = map.get_mut("$ref") {
                if let Some(name) = target.strip_prefix("#/$defs/") {
                    *target = format!("#/components/schemas/{prefix}.{name}");
                }
            }
            map.values_mut().for_each(|v| rewrite_refs(v, prefix));
        }
        Value::Array(items) => items.iter_mut().for_each(|v| rewrite_refs(v, prefix)),
        _ => {}
    }
}

/// `GET /api/v1/openapi.json`
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    operation_id = "openapi_document",
    tag = "health",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "This document", content_type = "application/json"),
        (status = 401, description = "No valid token", body = ErrorBody),
    )
)]
pub(crate) async fn openapi_json(State(state): State<AppState>) -> Json<Value> {
    let health = state.plane.health().await;
    let available: Vec<String> = health.executors.into_iter().filter(|e| e.available).map(|e| e.name).collect();
    Json(document_for(&state.plane.functions(), &available))
}

/// The document's route.
pub(crate) fn router() -> Router<AppState> {
    Router::new().route("/api/v1/openapi.json", get(openapi_json))
}
