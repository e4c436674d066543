//! The REST API over real HTTP, against `simple_tasks serve` on an
//! ephemeral port: every route, good and bad input, each error code, auth
//! failures, de-duplication, cancel and delete rules, and the OpenAPI
//! document.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::server::{API_KEY, Server, USER, wait_final};

async fn body(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// The error body's code, after checking the body has the documented shape.
fn code(body: &Value) -> &str {
    assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "an error says what to fix: {body}");
    body["error"]["code"].as_str().unwrap_or_else(|| panic!("not an error body: {body}"))
}

async fn submit(client: &reqwest::Client, server: &Server, body: Value) -> (StatusCode, Value) {
    self::body(client.post(server.at("/api/v1/tasks")).json(&body).send().await.unwrap()).await
}

#[tokio::test]
async fn health_needs_no_token_and_everything_else_does() {
    let server = Server::start(&[]);
    let anonymous = reqwest::Client::new();
    let (status, health) = body(anonymous.get(server.at("/health")).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(health["status"], "ok");
    assert_eq!(health["store"]["available"], true);
    let names: Vec<&str> =
        health["executors"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["thread", "process", "docker"]);

    let id = "01a23248-681d-7062-ac4b-834aa6404cb6";
    let routes = [
        ("GET", "/api/v1/functions".to_owned()),
        ("GET", "/api/v1/functions/add_numbers".to_owned()),
        ("POST", "/api/v1/functions/add_numbers/call".to_owned()),
        ("POST", "/api/v1/tasks".to_owned()),
        ("GET", "/api/v1/tasks".to_owned()),
        ("GET", format!("/api/v1/tasks/{id}")),
        ("DELETE", format!("/api/v1/tasks/{id}")),
        ("GET", format!("/api/v1/tasks/{id}/download")),
        ("GET", format!("/api/v1/tasks/{id}/logs")),
        ("POST", format!("/api/v1/tasks/{id}/cancel")),
        ("GET", format!("/api/v1/tasks/{id}/ws")),
        ("GET", "/api/v1/events/ws".to_owned()),
        ("GET", "/api/v1/openapi.json".to_owned()),
        ("POST", "/api/v1/echo".to_owned()),
        ("GET", "/api/v1/workers".to_owned()),
        ("POST", "/api/v1/polling/revoke".to_owned()),
    ];
    let forged = {
        // `alg: none` with the claims of a valid access token.
        let header = "eyJhbGciOiJub25lIn0"; // {"alg":"none"}
        let claims = server.token.split('.').nth(1).unwrap();
        format!("{header}.{claims}.")
    };
    let refresh = {
        let (_, pair) =
            body(anonymous.post(server.at("/token")).json(&json!({"api_key": API_KEY})).send().await.unwrap()).await;
        pair["refresh_token"].as_str().unwrap().to_owned()
    };
    for (method, path) in &routes {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        for auth in [
            None,
            Some("Bearer not-a-token".to_owned()),
            Some(format!("Bearer {forged}")),
            Some(format!("Bearer {refresh}")),
        ] {
            let mut request = anonymous.request(method.clone(), server.at(path));
            if let Some(auth) = &auth {
                request = request.header("authorization", auth);
            }
            let (status, error) = body(request.send().await.unwrap()).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path} with {auth:?}: {error}");
            assert_eq!(code(&error), "unauthorized");
        }
    }
    // The API key itself works as a bearer token.
    let response = anonymous.get(server.at("/api/v1/functions")).bearer_auth(API_KEY).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn tokens_come_from_credentials_and_refresh_once() {
    let server = Server::start(&[]);
    let client = reqwest::Client::new();
    let post = |path: &'static str, body: Value| client.post(server.at(path)).json(&body).send();

    let (status, pair) = body(post("/token", json!({"username": USER.0, "password": USER.1})).await.unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{pair}");
    assert_eq!(pair["token_type"], "bearer");
    let access = pair["access_token"].as_str().unwrap().to_owned();
    let response = client.get(server.at("/api/v1/functions")).bearer_auth(&access).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    let (status, error) = body(post("/token", json!({"username": USER.0, "password": "wrong"})).await.unwrap()).await;
    assert_eq!((status, code(&error)), (StatusCode::UNAUTHORIZED, "unauthorized"));

    // A refresh token works once; the access token is no refresh token.
    let refresh = pair["refresh_token"].as_str().unwrap();
    let (status, next) = body(post("/token/refresh", json!({"refresh_token": refresh})).await.unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{next}");
    let (status, _) = body(post("/token/refresh", json!({"refresh_token": refresh})).await.unwrap()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a rotated refresh token is refused");
    let (status, _) = body(post("/token/refresh", json!({"refresh_token": access})).await.unwrap()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let response = client
        .get(server.at("/api/v1/functions"))
        .bearer_auth(next["refresh_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "a refresh token is no access token");

    // Malformed, untyped and misshapen bodies.
    let response =
        client.post(server.at("/token")).header("content-type", "application/json").body("{").send().await.unwrap();
    let (status, error) = body(response).await;
    assert_eq!((status, code(&error)), (StatusCode::BAD_REQUEST, "bad_request"));
    let response = client.post(server.at("/token")).body("{}").send().await.unwrap();
    let (status, error) = body(response).await;
    assert_eq!((status, code(&error)), (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"));
    let (status, error) = body(post("/token", json!({"user": "x"})).await.unwrap()).await;
    assert_eq!((status, code(&error)), (StatusCode::UNPROCESSABLE_ENTITY, "invalid"));

    // Failed logins are limited per client.
    let mut limited = false;
    for _ in 0..12 {
        let (status, _) = body(post("/token", json!({"api_key": "wrong"})).await.unwrap()).await;
        limited |= status == StatusCode::TOO_MANY_REQUESTS;
    }
    assert!(limited, "repeated failures get 429");
}

#[tokio::test]
async fn functions_are_described_and_called() {
    let server = Server::start(&[]);
    let client = server.client();
    let (status, list) = body(client.get(server.at("/api/v1/functions")).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    let titles: Vec<&str> = list["items"].as_array().unwrap().iter().map(|f| f["title"].as_str().unwrap()).collect();
    assert_eq!(titles, ["add_numbers", "multiply_numbers", "quote_order", "raise_exception", "sleep_for_seconds"]);

    let (status, add) = body(client.get(server.at("/api/v1/functions/add_numbers")).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(add["description"], "Add two numbers together");
    assert_eq!(add["args_schema"]["properties"]["a"]["type"], "integer");
    assert_eq!(add["output_schema"]["type"], "integer");
    assert_eq!(add["tags"], json!(["math"]));
    let (status, error) = body(client.get(server.at("/api/v1/functions/nope")).send().await.unwrap()).await;
    assert_eq!((status, code(&error)), (StatusCode::NOT_FOUND, "not_found"));

    let call = |title: &str, query: &str, payload: Value| {
        client.post(server.at(&format!("/api/v1/functions/{title}/call{query}"))).json(&payload).send()
    };
    let (status, run) = body(call("add_numbers", "", json!({"a": 2, "b": 3})).await.unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{run}");
    assert_eq!((run["status"].as_str(), &run["result"]), (Some("completed"), &json!(5)));
    let (status, run) = body(call("raise_exception", "", json!({})).await.unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{run}");
    assert_eq!(run["status"], "failed");
    assert_eq!(run["error"]["message"], "This is a test exception");
    let (status, error) = body(call("add_numbers", "", json!({"a": 2, "b": "x"})).await.unwrap()).await;
    assert_eq!((status, code(&error)), (StatusCode::UNPROCESSABLE_ENTITY, "invalid"));
    assert_eq!(error["error"]["details"]["issues"][0]["path"], "payload.b");
    let (status, run) = body(call("sleep_for_seconds", "?timeout=0", json!({"seconds": 30})).await.unwrap()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "the wait passed: {run}");
    assert!(matches!(run["status"].as_str(), Some("pending" | "running")), "{run}");
    let (status, error) = body(call("add_numbers", "?timeout=100000", json!({"a": 1, "b": 1})).await.unwrap()).await;
    assert_eq!((status, code(&error)), (StatusCode::BAD_REQUEST, "bad_request"));
    let (status, error) = body(call("nope", "", json!({})).await.unwrap()).await;
    assert_eq!((status, code(&error)), (StatusCode::NOT_FOUND, "not_found"));
}

#[tokio::test]
async fn runs_are_submitted_listed_and_fetched() {
    let server = Server::start(&[]);
    let client = server.client();
    let response = client
        .post(server.at("/api/v1/tasks"))
        .json(&json!({"task_title": "add_numbers", "payload": {"a": 2, "b": 3}, "executor": "thread", "priority": 0, "unique": true, "idempotency_key": null}))
        .send()
        .await
        .unwrap();
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let (status, run) = body(response).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{run}");
    let id = run["task_id"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("/api/v1/tasks/{id}"));
    // Pending, or already running: an idle server's engine claims a run
    // at its submit (once its first claim found the queue empty).
    assert!(["pending", "running"].contains(&run["status"].as_str().unwrap()), "{run}");
    assert_eq!(run["task_title"], "add_numbers");
    let done = wait_final(&client, &server, &id).await;
    assert_eq!(done["status"], "completed");
    assert_eq!(done["result"], 5);
    assert_eq!(done["attempt"], 1);
    assert_eq!(done["executor"], "thread");
    for field in ["created_at", "started_at", "finished_at"] {
        assert!(done[field].as_str().is_some_and(|t| t.ends_with('Z')), "{field}: {done}");
    }

    for n in 0..3 {
        let (status, _) =
            submit(&client, &server, json!({"task_title": "multiply_numbers", "payload": {"a": n}})).await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    let (status, page) =
        body(client.get(server.at("/api/v1/tasks?task_title=multiply_numbers&limit=2")).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((page["total"].as_u64(), page["items"].as_array().unwrap().len()), (Some(3), 2));
    let (_, rest) =
        body(client.get(server.at("/api/v1/tasks?task_title=multiply_numbers&limit=2&offset=2")).send().await.unwrap())
            .await;
    assert_eq!(rest["items"].as_array().unwrap().len(), 1);
    let (_, completed) =
        body(client.get(server.at("/api/v1/tasks?status=completed&task_title=add_numbers")).send().await.unwrap())
            .await;
    assert_eq!(completed["items"][0]["task_id"], id.as_str());
    // Lists carry summaries, whatever the runs hold; the run itself the rest.
    let listed = completed["items"][0].as_object().unwrap();
    for heavy in ["payload", "result", "attempts"] {
        assert!(!listed.contains_key(heavy), "a list item without `{heavy}`: {listed:?}");
    }
    assert_eq!(listed["status"], "completed");
    let (_, one) = body(client.get(server.at(&format!("/api/v1/tasks/{id}"))).send().await.unwrap()).await;
    assert!(one["payload"].is_object() && one.get("result").is_some() && one["attempts"].is_array(), "{one}");
    // Several statuses, comma-separated: runs in any of them.
    let (_, either) = body(
        client.get(server.at("/api/v1/tasks?status=completed,failed&task_title=add_numbers")).send().await.unwrap(),
    )
    .await;
    assert_eq!(either["total"], completed["total"], "no add_numbers run failed: the same runs");
    let (_, none) = body(
        client.get(server.at("/api/v1/tasks?status=failed,cancelled&task_title=add_numbers")).send().await.unwrap(),
    )
    .await;
    assert_eq!(none["total"], 0);
    for (query, says) in [
        (
            "status=done",
            "`status=done` is not accepted; `status` takes pending, running, completed, failed or cancelled",
        ),
        ("status=completed,dune", "`status=dune` is not accepted"),
        ("limit=abc", "`limit` takes the page size, an integer from 1 to 500"),
        ("limit=0", "limit=0: ask for 1 to 500 runs a page"),
        ("limit=501", "limit=501: ask for 1 to 500 runs a page"),
        ("offset=-1", "`offset` takes how many runs to skip"),
        ("bogus=1", "unknown query parameter `bogus`; this route takes `status`"),
    ] {
        let (status, error) =
            body(client.get(server.at(&format!("/api/v1/tasks?{query}"))).send().await.unwrap()).await;
        assert_eq!((status, code(&error)), (StatusCode::BAD_REQUEST, "bad_request"), "{query}");
        let message = error["error"]["message"].as_str().unwrap();
        assert!(message.contains(says) && !message.contains("deserialize"), "{query}: {message}");
    }
    for missing in ["01a23248-681d-7062-ac4b-834aa6404cb6", "not-a-uuid"] {
        let (status, error) =
            body(client.get(server.at(&format!("/api/v1/tasks/{missing}"))).send().await.unwrap()).await;
        assert_eq!((status, code(&error)), (StatusCode::NOT_FOUND, "not_found"), "{missing}");
        assert_eq!(error["error"]["message"], format!("no run with id `{missing}`"));
    }
}

#[tokio::test]
async fn bad_submits_get_the_error_that_says_what_to_fix() {
    let server = Server::start(&[("TASKFLOW_MAX_BODY_BYTES", "65536")]);
    let client = server.client();
    let raw = |text: String, content_type: Option<&str>| {
        let mut request = client.post(server.at("/api/v1/tasks")).body(text);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        request.send()
    };
    let json_type = Some("application/json");
    let cases: Vec<(String, Option<&str>, StatusCode, &str)> = vec![
        ("{\"task_title\": ".to_owned(), json_type, StatusCode::BAD_REQUEST, "bad_request"),
        ("not json".to_owned(), json_type, StatusCode::BAD_REQUEST, "bad_request"),
        (
            format!(r#"{{"task_title": "add_numbers", "payload": {}{}}}"#, "[".repeat(10_000), "]".repeat(10_000)),
            json_type,
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            r#"{"task_title": "add_numbers"}"#.to_owned(),
            None,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            r#"{"task_title": "add_numbers"}"#.to_owned(),
            Some("text/plain"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            format!(r#"{{"task_title": "add_numbers", "payload": {{"a": "{}"}}}}"#, "x".repeat(100_000)),
            json_type,
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
        (r#"{"payload": {}}"#.to_owned(), json_type, StatusCode::UNPROCESSABLE_ENTITY, "invalid"),
        (r#"{"task_title": 5}"#.to_owned(), json_type, StatusCode::UNPROCESSABLE_ENTITY, "invalid"),
        (
            r#"{"task_title": "add_numbers", "colour": 1}"#.to_owned(),
            json_type,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
        ),
        (r#"{"task_title": "nope"}"#.to_owned(), json_type, StatusCode::NOT_FOUND, "not_found"),
    ];
    for (text, content_type, expected, expected_code) in cases {
        let shown = text.chars().take(60).collect::<String>();
        let (status, error) = body(raw(text, content_type).await.unwrap()).await;
        assert_eq!((status, code(&error)), (expected, expected_code), "{shown}: {error}");
    }
    // A body over the limit says what the limit is and how to raise it.
    let (_, error) = body(raw(format!(r#"{{"a": "{}"}}"#, "x".repeat(100_000)), json_type).await.unwrap()).await;
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.contains("64 KiB (65536 bytes)") && message.contains("--max-body-bytes"), "{message}");
    let invalid = [
        (json!({"task_title": "add_numbers", "payload": {"a": 1}}), "payload.b", "required"),
        (json!({"task_title": "add_numbers", "payload": {"a": 1, "b": "x"}}), "payload.b", "expected integer"),
        (json!({"task_title": "add_numbers", "payload": {"a": 1, "b": 2, "c": 3}}), "payload.c", ""),
        (json!({"task_title": "add_numbers", "payload": [1, 2]}), "payload", "object"),
        (json!({"task_title": "add_numbers", "payload": {"a": 1, "b": 2}, "executor": "gpu"}), "executor", "thread"),
    ];
    for (request, path, needle) in invalid {
        let (status, error) = submit(&client, &server, request.clone()).await;
        assert_eq!((status, code(&error)), (StatusCode::UNPROCESSABLE_ENTITY, "invalid"), "{request}: {error}");
        let issue = &error["error"]["details"]["issues"][0];
        assert_eq!(issue["path"], path, "{error}");
        assert!(issue["message"].as_str().unwrap().contains(needle), "{error}");
    }
    // The server is fine after all of it.
    let (status, _) = submit(&client, &server, json!({"task_title": "add_numbers", "payload": {"a": 1, "b": 2}})).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, error) = body(client.get(server.at("/api/v1/nothing-here")).send().await.unwrap()).await;
    assert_eq!((status, code(&error)), (StatusCode::NOT_FOUND, "not_found"));
    let (status, error) = body(client.put(server.at("/api/v1/tasks")).send().await.unwrap()).await;
    assert_eq!((status, code(&error)), (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"));
}

#[tokio::test]
async fn an_enum_payload_error_names_the_field_of_the_variant_the_tag_selects() {
    let server = Server::start_binary(env!("CARGO_BIN_EXE_api_app"), &[], &[]);
    let client = server.client();
    let card_without_digits = json!({"task_title": "pay", "payload": {"payment": {"type": "Card", "amount": 5}}});
    let (status, error) = submit(&client, &server, card_without_digits).await;
    assert_eq!((status, code(&error)), (StatusCode::UNPROCESSABLE_ENTITY, "invalid"), "{error}");
    assert_eq!(
        error["error"]["details"]["issues"],
        json!([{"path": "payload.payment.last4", "message": "required field is missing"}]),
        "{error}"
    );
    let wire = json!({"task_title": "pay", "payload": {"payment": {"type": "Wire", "amount": 5}}});
    let (status, error) = submit(&client, &server, wire).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
    assert_eq!(
        error["error"]["details"]["issues"],
        json!([{"path": "payload.payment.type", "message": r#"expected one of "Cash", "Card", found string "Wire""#}]),
        "{error}"
    );
    let card = json!({"task_title": "pay", "payload": {"payment": {"type": "Card", "amount": 5, "last4": "4242"}}});
    let (status, run) = submit(&client, &server, card).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{run}");
}

#[tokio::test]
async fn equal_submits_are_deduplicated_and_keys_make_retries_safe() {
    let server = Server::start(&[]);
    let client = server.client();
    let sleepy = json!({"task_title": "sleep_for_seconds", "payload": {"seconds": 30}});
    let (_, first) = submit(&client, &server, sleepy.clone()).await;
    let (status, again) = submit(&client, &server, sleepy.clone()).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(again["task_id"], first["task_id"], "an equal active run is returned");
    let mut separate = sleepy.clone();
    separate["unique"] = json!(false);
    let (_, other) = submit(&client, &server, separate).await;
    assert_ne!(other["task_id"], first["task_id"], "unique: false makes a new run");

    let keyed = |key: &str, a: i64| {
        client
            .post(server.at("/api/v1/tasks"))
            .header("idempotency-key", key)
            .json(&json!({"task_title": "add_numbers", "payload": {"a": a, "b": 1}}))
            .send()
    };
    let (_, one) = body(keyed("order-17", 1).await.unwrap()).await;
    wait_final(&client, &server, one["task_id"].as_str().unwrap()).await;
    let (status, two) = body(keyed("order-17", 1).await.unwrap()).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(two["task_id"], one["task_id"], "the same key is the same run, finished or not");
    let (status, error) = body(keyed("order-17", 2).await.unwrap()).await;
    assert_eq!((status, code(&error)), (StatusCode::CONFLICT, "conflict"), "{error}");
    let mut both = json!({"task_title": "add_numbers", "payload": {"a": 1, "b": 1}, "idempotency_key": "a"});
    let response =
        client.post(server.at("/api/v1/tasks")).header("idempotency-key", "b").json(&both).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    both["idempotency_key"] = json!("b");
    let response =
        client.post(server.at("/api/v1/tasks")).header("idempotency-key", "b").json(&both).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    for id in [&first["task_id"], &other["task_id"]] {
        client.post(server.at(&format!("/api/v1/tasks/{}/cancel", id.as_str().unwrap()))).send().await.unwrap();
    }
}

#[tokio::test]
async fn cancel_and_delete_follow_the_rules() {
    let server = Server::start(&[]);
    let client = server.client();
    let (_, run) =
        submit(&client, &server, json!({"task_title": "sleep_for_seconds", "payload": {"seconds": 30}})).await;
    let id = run["task_id"].as_str().unwrap().to_owned();
    let path = |suffix: &str| server.at(&format!("/api/v1/tasks/{id}{suffix}"));

    let (status, error) = body(client.delete(path("")).send().await.unwrap()).await;
    assert_eq!(
        (status, code(&error)),
        (StatusCode::CONFLICT, "conflict"),
        "an active run is not deleted without force"
    );
    let (status, error) = body(client.get(path("/download")).send().await.unwrap()).await;
    assert_eq!((status, code(&error)), (StatusCode::CONFLICT, "conflict"), "no result yet");
    let (status, cancelled) = body(client.post(path("/cancel")).send().await.unwrap()).await;
    assert_eq!((status, cancelled["status"].as_str()), (StatusCode::OK, Some("cancelled")));
    let (status, error) = body(client.post(path("/cancel")).send().await.unwrap()).await;
    assert_eq!((status, code(&error)), (StatusCode::CONFLICT, "conflict"), "a final run is not cancelled again");
    let response = client.delete(path("")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT, "a final run is deleted");
    let (status, _) = body(client.get(path("")).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = body(client.get(path("/logs")).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = body(client.post(path("/cancel")).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (_, running) =
        submit(&client, &server, json!({"task_title": "sleep_for_seconds", "payload": {"seconds": 29}})).await;
    let running_id = running["task_id"].as_str().unwrap();
    let response = client.delete(server.at(&format!("/api/v1/tasks/{running_id}?force=true"))).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT, "force deletes an active run");
    let response = client.delete(server.at(&format!("/api/v1/tasks/{running_id}?force=maybe"))).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn results_download_and_logs_page() {
    let server = Server::start(&[]);
    let client = server.client();
    let (_, run) = submit(&client, &server, json!({"task_title": "add_numbers", "payload": {"a": 40, "b": 2}})).await;
    let id = run["task_id"].as_str().unwrap();
    wait_final(&client, &server, id).await;
    let response = client.get(server.at(&format!("/api/v1/tasks/{id}/download"))).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(
        response.headers()["content-disposition"].to_str().unwrap(),
        format!("attachment; filename=\"add_numbers-{id}.json\"")
    );
    assert_eq!(response.text().await.unwrap(), "42");

    let (_, nap) =
        submit(&client, &server, json!({"task_title": "sleep_for_seconds", "payload": {"seconds": 1}})).await;
    let nap_id = nap["task_id"].as_str().unwrap();
    wait_final(&client, &server, nap_id).await;
    let response = client.get(server.at(&format!("/api/v1/tasks/{nap_id}/download"))).send().await.unwrap();
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    assert_eq!(response.text().await.unwrap(), "great nap!");

    let (_, failing) = submit(&client, &server, json!({"task_title": "raise_exception", "payload": {}})).await;
    let failing_id = failing["task_id"].as_str().unwrap();
    wait_final(&client, &server, failing_id).await;
    let (status, error) =
        body(client.get(server.at(&format!("/api/v1/tasks/{failing_id}/download"))).send().await.unwrap()).await;
    assert_eq!((status, code(&error)), (StatusCode::CONFLICT, "conflict"));
    assert_eq!(error["error"]["message"], format!("run {failing_id} has no result to download: it is failed"));

    // Log lines are written in batches: wait for the task's line.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let logs = loop {
        let (status, logs) =
            body(client.get(server.at(&format!("/api/v1/tasks/{nap_id}/logs"))).send().await.unwrap()).await;
        assert_eq!(status, StatusCode::OK);
        if !logs["items"].as_array().unwrap().is_empty() || std::time::Instant::now() > deadline {
            break logs;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(logs["items"][0]["message"], "sleeping for 1s", "{logs}");
    assert_eq!(logs["items"][0]["level"], "info");
    let after = logs["next_after"].as_u64().unwrap();
    let (_, rest) =
        body(client.get(server.at(&format!("/api/v1/tasks/{nap_id}/logs?after={after}"))).send().await.unwrap()).await;
    assert!(rest["items"].as_array().unwrap().is_empty());
    let (status, _) =
        body(client.get(server.at(&format!("/api/v1/tasks/{nap_id}/logs?limit=0"))).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_openapi_document_covers_every_route() {
    let server = Server::start(&[]);
    let client = server.client();
    let (status, doc) = body(client.get(server.at("/api/v1/openapi.json")).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{}", doc["openapi"]);
    let documented: Vec<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| item.as_object().unwrap().keys().map(move |m| (m.to_uppercase(), path.clone())))
        .collect();
    let routes = [
        ("GET", "/health"),
        ("POST", "/token"),
        ("POST", "/token/refresh"),
        ("GET", "/api/v1/functions"),
        ("GET", "/api/v1/functions/{title}"),
        ("POST", "/api/v1/tasks"),
        ("GET", "/api/v1/tasks"),
        ("GET", "/api/v1/tasks/{task_id}"),
        ("DELETE", "/api/v1/tasks/{task_id}"),
        ("GET", "/api/v1/tasks/{task_id}/download"),
        ("GET", "/api/v1/tasks/{task_id}/logs"),
        ("POST", "/api/v1/tasks/{task_id}/cancel"),
        ("GET", "/api/v1/tasks/{task_id}/ws"),
        ("GET", "/api/v1/events/ws"),
        ("GET", "/api/v1/openapi.json"),
        ("POST", "/api/v1/echo"),
        ("POST", "/api/v1/polling/register"),
        ("GET", "/api/v1/polling/config"),
        ("GET", "/api/v1/polling/config/statuses"),
        ("POST", "/api/v1/polling/claim"),
        ("POST", "/api/v1/polling/update"),
        ("POST", "/api/v1/polling/revoke"),
        ("GET", "/api/v1/workers"),
    ];
    let mut expected: Vec<(String, String)> = routes.iter().map(|(m, p)| ((*m).to_owned(), (*p).to_owned())).collect();
    // The call route is documented once per task, with the task's own schema.
    for title in ["add_numbers", "multiply_numbers", "quote_order", "raise_exception", "sleep_for_seconds"] {
        expected.push(("POST".to_owned(), format!("/api/v1/functions/{title}/call")));
    }
    let quote = &doc["paths"]["/api/v1/functions/quote_order/call"]["post"]["requestBody"]["content"]["application/json"]
        ["schema"];
    assert_eq!(quote["properties"]["address"]["$ref"], "#/components/schemas/quote_order.Address");
    assert!(doc["components"]["schemas"]["quote_order.Address"]["properties"]["street"].is_object());
    // A task's options, documented whole, as `#[task(...)]` takes them.
    let options = doc["components"]["schemas"]["FunctionOptions"]["properties"].as_object().unwrap();
    let mut names: Vec<&str> = options.keys().map(String::as_str).collect();
    let every = ["timeout_ms", "retries", "retry_delay_ms", "concurrency", "executor", "tags", "queue"];
    let docker = ["image", "network", "memory_bytes", "cpus", "pids", "env"];
    let mut expected_names = [&every[..], &docker[..]].concat();
    names.sort();
    expected_names.sort();
    assert_eq!(names, expected_names, "FunctionOptions in the document");
    let mut found = documented.clone();
    expected.sort();
    found.sort();
    assert_eq!(found, expected, "the document lists exactly the API's routes");
    // Every documented operation is served: none falls through to the 404
    // or 405 fallbacks, and each documents its error responses.
    for (method, path) in &documented {
        let concrete =
            path.replace("{title}", "add_numbers").replace("{task_id}", "01a23248-681d-7062-ac4b-834aa6404cb6");
        let response = client
            .request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), server.at(&concrete))
            .send()
            .await
            .unwrap();
        let status = response.status();
        let (_, body) = body(response).await;
        let fell_through = body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("no route") || m.contains("is not allowed on"));
        assert!(!fell_through, "{method} {path} is documented but not served: {status} {body}");
        let op = &doc["paths"][path][method.to_lowercase()];
        let responses = op["responses"].as_object().unwrap();
        assert!(responses.keys().any(|c| c.starts_with('2') || c == "101"), "{method} {path}: a success response");
        if path != "/health" {
            assert!(responses.keys().any(|c| c.starts_with('4')), "{method} {path}: its errors");
        }
    }
    validate_with_openapi_spec_validator(&doc);
}

/// Validates the document with `openapi-spec-validator` (PyPI), which the
/// test command installs; skipped loudly elsewhere unless required.
fn validate_with_openapi_spec_validator(doc: &Value) {
    let python = std::env::var("TASKFLOW_TEST_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let probe = std::process::Command::new(&python).args(["-c", "import openapi_spec_validator"]).output();
    if !probe.is_ok_and(|o| o.status.success()) {
        assert!(
            std::env::var_os("TASKFLOW_REQUIRE_TOOLS").is_none(),
            "openapi-spec-validator is required under the test command but `{python}` cannot import it"
        );
        println!("SKIPPED: openapi-spec-validator is not installed for `{python}` (./scripts/test installs it)");
        return;
    }
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), serde_json::to_vec(doc).unwrap()).unwrap();
    let output =
        std::process::Command::new(&python).args(["-m", "openapi_spec_validator"]).arg(file.path()).output().unwrap();
    assert!(
        output.status.success(),
        "the OpenAPI document is not valid:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn echo_answers_with_the_object_sent_and_stores_nothing() {
    let server = Server::start(&[]);
    let client = server.client();
    let document = json!({"task_name": "add_numbers", "payload": {"a": 1, "b": [2, "three", null]}, "ok": true});
    let (status, echoed) = body(client.post(server.at("/api/v1/echo")).json(&document).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(echoed, document);
    // Like every API body, a JSON object; anything else says so.
    for not_an_object in [json!(42), json!([null, null]), json!("text")] {
        let (status, error) =
            body(client.post(server.at("/api/v1/echo")).json(&not_an_object).send().await.unwrap()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{not_an_object}: {error}");
        assert_eq!(code(&error), "invalid");
    }

    let malformed = client
        .post(server.at("/api/v1/echo"))
        .header("content-type", "application/json")
        .body("{\"a\": ")
        .send()
        .await
        .unwrap();
    let (status, error) = body(malformed).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    assert_eq!(code(&error), "bad_request");
    let (status, error) = body(client.post(server.at("/api/v1/echo")).body("{}").send().await.unwrap()).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{error}");
    assert_eq!(code(&error), "unsupported_media_type");

    let (status, page) = body(client.get(server.at("/api/v1/tasks")).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["total"], 0, "an echo stores no run: {page}");
}
