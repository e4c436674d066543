//! The HTTP layer under attack: forged and misused tokens, a weak secret,
//! slow clients, a flood past the concurrency cap, and schemathesis fuzzing
//! the whole API from its OpenAPI document.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::support::server::Server;

const SECRET: &str = "a-test-secret-of-at-least-thirty-two-bytes";

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// A token with any header and claims, signed with HMAC-SHA256 under `key`.
fn forge(header: Value, claims: Value, key: &[u8]) -> String {
    let input = format!("{}.{}", B64.encode(header.to_string()), B64.encode(claims.to_string()));
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(input.as_bytes());
    format!("{input}.{}", B64.encode(mac.finalize().into_bytes()))
}

#[tokio::test]
async fn forged_expired_and_misused_tokens_get_401() {
    let server = Server::start(&[("TASKFLOW_SECRET", SECRET)]);
    let client = reqwest::Client::new();
    let hs256 = json!({"alg": "HS256", "typ": "JWT"});
    let claims = |typ: &str| json!({"sub": "x", "typ": typ, "iat": now(), "exp": now() + 600, "jti": "j1"});
    let key = SECRET.as_bytes();
    // The harness is right: a well-made token passes.
    let good = forge(hs256.clone(), claims("access"), key);
    let response = client.get(server.at("/api/v1/functions")).bearer_auth(&good).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "a token signed like the server's works");

    let tampered = {
        let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
        parts[1] = B64.encode(
            json!({"sub": "admin", "typ": "access", "iat": now(), "exp": now() + 600, "jti": "j1"}).to_string(),
        );
        parts.join(".")
    };
    let session = forge(hs256.clone(), claims("session"), key);
    let login = forge(hs256.clone(), claims("login"), key);
    let refresh = forge(hs256.clone(), claims("refresh"), key);
    let cases = [
        ("alg none", format!("{}.{}.", B64.encode(r#"{"alg":"none"}"#), B64.encode(claims("access").to_string()))),
        ("HS512 header", forge(json!({"alg": "HS512"}), claims("access"), key)),
        ("RS256 header", forge(json!({"alg": "RS256"}), claims("access"), key)),
        ("wrong key", forge(hs256.clone(), claims("access"), b"another-secret-of-thirty-two-bytes!!")),
        ("tampered payload", tampered),
        (
            "expired",
            forge(
                hs256.clone(),
                json!({"sub": "x", "typ": "access", "iat": now() - 100, "exp": now() - 10, "jti": "j"}),
                key,
            ),
        ),
        ("missing exp", forge(hs256.clone(), json!({"sub": "x", "typ": "access", "iat": now(), "jti": "j"}), key)),
        (
            "string exp",
            forge(
                hs256.clone(),
                json!({"sub": "x", "typ": "access", "iat": now(), "exp": (now() + 600).to_string(), "jti": "j"}),
                key,
            ),
        ),
        (
            "future nbf",
            forge(
                hs256.clone(),
                json!({"sub": "x", "typ": "access", "iat": now(), "exp": now() + 600, "nbf": now() + 300, "jti": "j"}),
                key,
            ),
        ),
        ("refresh as access", refresh.clone()),
        ("session as bearer", session),
        ("login link as bearer", login),
        ("garbage", "not.a.token".to_owned()),
    ];
    for (what, token) in &cases {
        let response = client.get(server.at("/api/v1/functions")).bearer_auth(token).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{what}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unauthorized", "{what}");
    }
    // The reverse: an access token is no refresh token; a refresh token works once.
    let response = client.post(server.at("/token/refresh")).json(&json!({"refresh_token": good})).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "access as refresh");
    let response =
        client.post(server.at("/token/refresh")).json(&json!({"refresh_token": refresh})).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let response =
        client.post(server.at("/token/refresh")).json(&json!({"refresh_token": refresh})).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "a rotated refresh token");
}

#[test]
fn a_secret_shorter_than_256_bits_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_simple_tasks"))
        .args(["serve", "--addr", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(dir.path())
        .env("TASKFLOW_SECRET", "too-short")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("at least 32 (256 bits)") && stderr.contains("TASKFLOW_SECRET"), "{stderr}");
}

/// Sends `bytes` one at a time, `gap` apart, until the server closes the
/// connection; returns how many it took.
fn trickle(address: &str, bytes: &[u8], gap: Duration) -> usize {
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(gap)).unwrap();
    for (sent, byte) in bytes.iter().enumerate() {
        if stream.write_all(&[*byte]).is_err() {
            return sent;
        }
        let mut buffer = [0u8; 512];
        match stream.read(&mut buffer) {
            // Closed, or an answer (a 4xx) before the request was complete.
            Ok(_) => return sent + 1,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return sent + 1,
        }
    }
    bytes.len()
}

#[tokio::test]
async fn a_client_sending_one_byte_a_second_is_cut_off() {
    let server = Server::start(&[("TASKFLOW_READ_TIMEOUT_SECONDS", "2")]);
    let headers = format!("GET /health HTTP/1.1\r\nHost: x\r\nX-Padding: {}\r\n\r\n", "p".repeat(60));
    let address = server.url.trim_start_matches("http://").to_owned();
    let sent = tokio::task::spawn_blocking({
        let address = address.clone();
        move || trickle(&address, headers.as_bytes(), Duration::from_millis(500))
    })
    .await
    .unwrap();
    assert!(sent < 40, "the connection is cut long before the headers end (after {sent} bytes)");

    let token = server.token.clone();
    let body = r#"{"task_title": "add_numbers", "payload": {"a": 1, "b": 2}}"#;
    let request = format!(
        "POST /api/v1/tasks HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let head_len = request.len() - body.len();
    let sent = tokio::task::spawn_blocking({
        move || {
            let mut stream = std::net::TcpStream::connect(address).unwrap();
            stream.write_all(&request.as_bytes()[..head_len]).unwrap();
            stream.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
            let mut sent = 0;
            for byte in &request.as_bytes()[head_len..] {
                if stream.write_all(&[*byte]).is_err() {
                    break;
                }
                sent += 1;
                let mut buffer = [0u8; 512];
                match stream.read(&mut buffer) {
                    Ok(n) => {
                        let answer = String::from_utf8_lossy(&buffer[..n]).into_owned();
                        assert!(n == 0 || answer.starts_with("HTTP/1.1 4"), "a slow body gets a 4xx: {answer}");
                        break;
                    }
                    Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                    Err(_) => break,
                }
            }
            sent
        }
    })
    .await
    .unwrap();
    assert!(sent < body.len(), "a trickled body is cut off too (after {sent} of {} bytes)", body.len());
    // The server is fine.
    let response = reqwest::get(server.at("/health")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn requests_past_the_cap_get_503_at_once_while_health_answers() {
    let server = Server::start(&[("TASKFLOW_MAX_CONCURRENT_REQUESTS", "2")]);
    let client = server.client();
    // Two calls that wait fill the cap. A call can itself be refused while
    // a probe holds a slot: then another takes its place.
    let call = |seconds: u64| {
        let client = client.clone();
        let url = server.at("/api/v1/functions/sleep_for_seconds/call?timeout=30");
        tokio::spawn(async move { client.post(url).json(&json!({"seconds": seconds})).send().await })
    };
    let mut waiting: Vec<_> = (0..2).map(|i| call(30 + i)).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    let refused = loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        for (i, slot) in waiting.iter_mut().enumerate() {
            if slot.is_finished() {
                *slot = call(30 + i as u64);
            }
        }
        let response = client.get(server.at("/api/v1/functions")).send().await.unwrap();
        if response.status() == StatusCode::SERVICE_UNAVAILABLE {
            break response.json::<Value>().await.unwrap();
        }
        assert!(Instant::now() < deadline, "the cap never bit");
    };
    assert_eq!(refused["error"]["code"], "unavailable");
    let health = reqwest::get(server.at("/health")).await.unwrap();
    assert_eq!(health.status(), StatusCode::OK, "/health is never limited");
    for task in waiting {
        task.abort();
    }
}

#[tokio::test]
async fn schemathesis_finds_nothing() {
    let python = std::env::var("TASKFLOW_TEST_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let st = std::path::Path::new(&python).with_file_name("st");
    if !st.exists() {
        assert!(
            std::env::var_os("TASKFLOW_REQUIRE_TOOLS").is_none(),
            "schemathesis is required under the test command but {} is missing",
            st.display()
        );
        println!("SKIPPED: schemathesis is not installed beside `{python}` (./scripts/test installs it)");
        return;
    }
    let server = Server::start_binary(env!("CARGO_BIN_EXE_api_app"), &[], &[]);
    let server_dir = tempfile::tempdir().unwrap();
    let mut command = std::process::Command::new(&st);
    command
        .arg("run")
        .arg(server.at("/api/v1/openapi.json"))
        .args(["--header", &format!("Authorization: Bearer {}", server.token)])
        .args(["--checks", "all", "--max-examples", "25", "--seed", "1", "--request-timeout", "120"])
        // Responses are timed only as a hang guard: on a shared machine a
        // Docker run's first image build is slow, and speed is the
        // benchmarks' business, never an assertion of a test.
        .args(["--max-response-time", "300"])
        // A WebSocket cannot be spoken by an HTTP fuzzer; the WebSocket
        // suite tests those two routes.
        .args(["--exclude-path-regex", "/ws$"])
        .env("SCHEMATHESIS_HOOKS", "")
        // Its caches stay out of the work tree.
        .current_dir(server_dir.path());
    let output = tokio::task::spawn_blocking(move || command.output()).await.unwrap().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "schemathesis found failures:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("passed") || stdout.contains("No issues found"), "{stdout}");
}
