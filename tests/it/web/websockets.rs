//! The WebSockets over a real connection: one run's status, stored log and
//! live events; every run's events; the refusals.

use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::support::server::Server;

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(server: &Server, path: &str, headers: &[(&'static str, String)]) -> Result<Socket, StatusCode> {
    let mut request = server.ws(path).into_client_request().unwrap();
    for (name, value) in headers {
        request.headers_mut().insert(*name, value.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((socket, _)) => Ok(socket),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Err(StatusCode::from_u16(response.status().as_u16()).unwrap())
        }
        Err(other) => panic!("{path}: {other}"),
    }
}

fn bearer(server: &Server) -> Vec<(&'static str, String)> {
    vec![("authorization", format!("Bearer {}", server.token))]
}

/// The next JSON message, within 30 s.
async fn next(socket: &mut Socket) -> Value {
    loop {
        let message = tokio::time::timeout(std::time::Duration::from_secs(30), socket.next())
            .await
            .expect("a message within 30 s")
            .expect("the socket stays open")
            .unwrap();
        if let Ok(text) = message.to_text()
            && !text.is_empty()
        {
            return serde_json::from_str(text).unwrap();
        }
    }
}

#[tokio::test]
async fn a_run_socket_sends_its_status_log_and_changes() {
    let server = Server::start(&[]);
    let run: Value = server.submit(json!({"task_title": "sleep_for_seconds", "payload": {"seconds": 2}})).await;
    let id = run["task_id"].as_str().unwrap();
    let mut socket = connect(&server, &format!("/api/v1/tasks/{id}/ws"), &bearer(&server)).await.unwrap();
    let first = next(&mut socket).await;
    assert_eq!(first["type"], "status", "the run as it is comes first: {first}");
    assert_eq!(first["task"]["task_id"], id);
    let (mut logged, mut progressed, mut last_status) = (Vec::new(), false, String::new());
    while last_status != "completed" {
        let event = next(&mut socket).await;
        match event["type"].as_str() {
            Some("status") => last_status = event["task"]["status"].as_str().unwrap().to_owned(),
            Some("log") => logged.push(event["line"]["message"].as_str().unwrap().to_owned()),
            Some("progress") => progressed = true,
            other => panic!("unexpected event {other:?}: {event}"),
        }
    }
    assert!(progressed, "progress reports arrive");
    // The line may be stored just after the status: it comes either way.
    while logged.is_empty() {
        let event = next(&mut socket).await;
        if event["type"] == "log" {
            logged.push(event["line"]["message"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(logged, ["sleeping for 2s"]);

    // A late subscriber gets the stored log on connecting.
    let mut late = connect(&server, &format!("/api/v1/tasks/{id}/ws"), &bearer(&server)).await.unwrap();
    assert_eq!(next(&mut late).await["task"]["status"], "completed");
    assert_eq!(next(&mut late).await["line"]["message"], "sleeping for 2s");
}

#[tokio::test]
async fn the_events_socket_sees_every_run() {
    let server = Server::start(&[]);
    let mut socket = connect(&server, "/api/v1/events/ws", &bearer(&server)).await.unwrap();
    let run: Value = server.submit(json!({"task_title": "add_numbers", "payload": {"a": 1, "b": 2}})).await;
    let mut statuses = Vec::new();
    while statuses.last().map(String::as_str) != Some("completed") {
        let event = next(&mut socket).await;
        if event["type"] == "status" && event["task"]["task_id"] == run["task_id"] {
            statuses.push(event["task"]["status"].as_str().unwrap().to_owned());
        }
    }
    // In order, whatever the race between the submit's event and the claim's.
    let rank = |s: &str| ["pending", "running", "completed"].iter().position(|x| *x == s).unwrap();
    assert!(statuses.windows(2).all(|w| rank(&w[0]) <= rank(&w[1])), "{statuses:?}");
    // An open socket does not hold the server up: SIGTERM still ends it cleanly.
    assert!(server.stop().success(), "serve exits cleanly with a socket open");
    drop(socket);
}

#[tokio::test]
async fn sockets_refuse_strangers_and_plain_requests() {
    let server = Server::start(&[]);
    assert_eq!(connect(&server, "/api/v1/events/ws", &[]).await.err(), Some(StatusCode::UNAUTHORIZED));
    let unknown = "/api/v1/tasks/01a23248-681d-7062-ac4b-834aa6404cb6/ws";
    assert_eq!(connect(&server, unknown, &bearer(&server)).await.err(), Some(StatusCode::NOT_FOUND));
    let response = server.client().get(server.at("/api/v1/events/ws")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST, "a plain GET is told this is a WebSocket");

    // The browser's session cookie works from this site, never another.
    let cookie = crate::web::pages::session_cookie(&server).await;
    let own_origin = vec![("cookie", cookie.clone()), ("origin", server.url.clone())];
    assert!(connect(&server, "/api/v1/events/ws", &own_origin).await.is_ok());
    let evil = vec![("cookie", cookie), ("origin", "http://evil.example".to_owned())];
    assert_eq!(connect(&server, "/api/v1/events/ws", &evil).await.err(), Some(StatusCode::FORBIDDEN));
}
