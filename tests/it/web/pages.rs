//! The web UI over plain HTTP, without a browser: the login link and
//! session, pages working without JavaScript, forms generated from the
//! schemas, messages beside the fields, escaping, CSRF and the security
//! headers.

use reqwest::StatusCode;
use reqwest::redirect::Policy;
use serde_json::{Value, json};

use crate::support::server::{Server, USER, wait_final};

/// A client that neither follows redirects nor keeps cookies.
fn browserless() -> reqwest::Client {
    reqwest::Client::builder().redirect(Policy::none()).build().unwrap()
}

/// Follows the printed login link and returns the session cookie
/// (`taskflow_session=…`).
pub async fn session_cookie(server: &Server) -> String {
    let response = browserless().get(&server.login_link).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let set_cookie = response.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(set_cookie.contains("HttpOnly"), "{set_cookie}");
    assert!(set_cookie.contains("SameSite=Lax"), "{set_cookie}");
    set_cookie.split(';').next().unwrap().to_owned()
}

pub(crate) async fn page(server: &Server, cookie: &str, path: &str) -> (StatusCode, String) {
    let response = browserless().get(server.at(path)).header("cookie", cookie).send().await.unwrap();
    (response.status(), response.text().await.unwrap())
}

/// The CSRF token a page's forms carry.
pub(crate) fn csrf(html: &str) -> String {
    let marker = "name=\"tf:csrf\" value=\"";
    let start = html.find(marker).expect("a CSRF field") + marker.len();
    html[start..].split('"').next().unwrap().to_owned()
}

pub(crate) async fn post_form(
    server: &Server,
    cookie: &str,
    path: &str,
    fields: &[(&str, &str)],
    origin: Option<&str>,
) -> reqwest::Response {
    let mut request = browserless().post(server.at(path)).header("cookie", cookie).form(fields);
    if let Some(origin) = origin {
        request = request.header("origin", origin);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn the_login_link_opens_a_session_and_pages_need_one() {
    let server = Server::start(&[]);
    let client = browserless();
    let response = client.get(server.at("/runs?status=failed")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()["location"], "/login?next=%2Fruns%3Fstatus%3Dfailed");
    let (status, html) = {
        let r = client.get(server.at("/login")).send().await.unwrap();
        (r.status(), r.text().await.unwrap())
    };
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Log in"));

    let cookie = session_cookie(&server).await;
    let (status, html) = page(&server, &cookie, "/").await;
    assert_eq!(status, StatusCode::OK);
    for title in ["add_numbers", "multiply_numbers", "quote_order", "raise_exception", "sleep_for_seconds"] {
        assert!(html.contains(&format!("/functions/{title}")), "{title} is listed");
    }
    assert!(html.contains("Add two numbers together"));
    assert!(html.contains("add_numbers(a: i64, b: i64) -&#62; i64"), "the signature, escaped");
    let (_, filtered) = page(&server, &cookie, "/?q=shop").await;
    assert!(filtered.contains("/functions/quote_order") && !filtered.contains("/functions/add_numbers"));

    // A forged or expired cookie is no session.
    let response =
        client.get(server.at("/")).header("cookie", "taskflow_session=forged.token.here").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let response = client.get(server.at("/login?token=not-a-token")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    // A user and password log in too; `next` never leaves the site.
    let response = client
        .post(server.at("/login"))
        .form(&[("username", USER.0), ("password", USER.1), ("next", "//evil.example/")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()["location"], "/");
    let response =
        client.post(server.at("/login")).form(&[("username", USER.0), ("password", "nope")]).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    // The cookie reads the API but does not change it.
    let response = client.get(server.at("/api/v1/functions")).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let response = client
        .post(server.at("/api/v1/tasks"))
        .header("cookie", &cookie)
        .json(&json!({"task_title": "add_numbers", "payload": {"a": 1, "b": 2}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn forms_follow_the_schema_and_submit_without_javascript() {
    let server = Server::start(&[]);
    let cookie = session_cookie(&server).await;
    let (status, html) = page(&server, &cookie, "/functions/quote_order").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("<fieldset class=\"group\" id=\"f-address\""), "a nested object is a fieldset");
    assert!(html.contains("name=\"address.street\""));
    assert!(html.contains("<select id=\"f-shipping\" name=\"shipping\""), "an enum is a select");
    assert!(html.contains("selected>standard — Within a week</option>"), "the default is selected");
    assert!(html.contains("name=\"items[0].sku\""), "a list of structs has an empty row to fill");
    assert!(html.contains("data-add=\"f-items\""), "and, for the script, an Add button");
    assert!(html.contains("name=\"discounts[0].key\""), "a map has key/value rows");
    assert!(html.contains("name=\"items.$json\""), "a composite field takes raw JSON too");
    assert!(
        html.contains("Note <code class=\"wire\">note</code> <span class=\"optional\">(optional)</span>"),
        "a humanised label, the wire name, an Option marked optional"
    );
    let (_, html) = page(&server, &cookie, "/functions/sleep_for_seconds").await;
    assert!(
        html.contains("<dt>Executor</dt><dd>thread</dd><dt>Timeout</dt><dd>1 min</dd>\n</dl>"),
        "its options: {html}"
    );
    assert!(
        html.contains("type=\"number\" id=\"f-seconds\" name=\"seconds\" value=\"\" step=\"1\" min=\"0\" max=\"18446744073709551615\" required"),
        "{html}"
    );
    let (_, html) = page(&server, &cookie, "/functions/multiply_numbers").await;
    assert!(html.contains("name=\"b\" value=\"2.0\" step=\"any\""), "defaults are prefilled");
    assert!(html.contains("<option value=\"thread\" selected>Thread</option>"), "the executor selector");

    let (_, html) = page(&server, &cookie, "/functions/add_numbers").await;
    assert!(html.contains("<dt>Executor</dt><dd>thread</dd><dt>Tags</dt><dd>math</dd>\n</dl>"), "only those set");
    let token = csrf(&html);
    // A wrong value: the page again, the message beside the field.
    let response =
        post_form(&server, &cookie, "/functions/add_numbers", &[("tf:csrf", &token), ("a", "2"), ("b", "x")], None)
            .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = response.text().await.unwrap();
    assert!(html.contains("id=\"f-b-error\">expected integer, found string &#34;x&#34;</p>"), "{html}");
    assert!(html.contains("name=\"b\" value=\"x\""), "what was typed stays");

    let response = post_form(
        &server,
        &cookie,
        "/functions/add_numbers",
        &[("tf:csrf", &token), ("a", "2"), ("b", "3"), ("tf:executor", "thread")],
        None,
    )
    .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let id = location.strip_prefix("/runs/").unwrap().to_owned();
    wait_final(&server.client(), &server, &id).await;
    let (status, html) = page(&server, &cookie, &location).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("<span class=\"badge completed\" id=\"status\">completed</span>"));
    assert!(html.contains("<pre id=\"result\" class=\"result\">5</pre>"), "{html}");

    // Nested fields decode from their names alone: a list's rows (the
    // empty spare row left out) and a map's key/value rows.
    let response = post_form(
        &server,
        &cookie,
        "/functions/quote_order",
        &[
            ("tf:csrf", &token),
            ("address.street", "1 Main St"),
            ("address.city", "Springfield"),
            ("shipping", "\"express\""),
            ("items[0].sku", "tea"),
            ("items[0].quantity", "2"),
            ("items[0].unit_price_cents", "350"),
            ("items[1].sku", ""),
            ("items[1].quantity", ""),
            ("items[1].unit_price_cents", ""),
            ("discounts[0].key", "tea"),
            ("discounts[0].value", "50"),
            ("discounts[1].key", ""),
            ("discounts[1].value", ""),
            ("note", ""),
        ],
        None,
    )
    .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let quote_id = response.headers()["location"].to_str().unwrap().strip_prefix("/runs/").unwrap().to_owned();
    let run = wait_final(&server.client(), &server, &quote_id).await;
    assert_eq!(
        run["payload"],
        json!({
            "address": {"street": "1 Main St", "city": "Springfield"},
            "shipping": "express",
            "items": [{"sku": "tea", "quantity": 2, "unit_price_cents": 350}],
            "discounts": {"tea": 50}
        })
    );
    assert_eq!(run["result"]["total_cents"], 350 + 1500, "{run}");
    // A malformed post is a 422 saying what to fix, beside the field.
    let response = post_form(
        &server,
        &cookie,
        "/functions/quote_order",
        &[("tf:csrf", &token), ("discounts[0].value", "5"), ("items.$json", "[1,")],
        None,
    )
    .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = response.text().await.unwrap();
    assert!(html.contains("id=\"f-discounts-error\">row 1 has a value but no key"), "{html}");
    assert!(html.contains("id=\"f-items-error\">not valid JSON"), "{html}");

    // Run again makes a new run of the same payload.
    let response = post_form(&server, &cookie, &format!("/runs/{id}/again"), &[("tf:csrf", &token)], None).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_ne!(response.headers()["location"], location.as_str());
    let (_, html) = page(&server, &cookie, &format!("/functions/add_numbers?from={id}")).await;
    assert!(html.contains("name=\"a\" value=\"2\"") && html.contains("name=\"b\" value=\"3\""), "edit and run");

    // History: filters and pages.
    let (status, html) = page(&server, &cookie, "/runs?task_title=add_numbers&status=completed").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains(&id));
    let (status, _) = page(&server, &cookie, "/runs?status=bogus").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, html) = page(&server, &cookie, "/runs/not-a-run").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(html.contains("no run with id `not-a-run`"), "a run is a run, not a task: {html}");
    let (status, _) = page(&server, &cookie, "/functions/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn forms_refuse_cross_site_posts_and_missing_tokens() {
    let server = Server::start(&[]);
    let cookie = session_cookie(&server).await;
    let (_, html) = page(&server, &cookie, "/functions/add_numbers").await;
    let token = csrf(&html);
    let fields = [("tf:csrf", token.as_str()), ("a", "1"), ("b", "1")];
    let response = post_form(&server, &cookie, "/functions/add_numbers", &fields, Some("http://evil.example")).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN, "another site's POST");
    let response = post_form(&server, &cookie, "/functions/add_numbers", &[("a", "1"), ("b", "1")], None).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN, "no CSRF token");
    let response =
        post_form(&server, &cookie, "/functions/add_numbers", &[("tf:csrf", "0000"), ("a", "1"), ("b", "1")], None)
            .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN, "a wrong CSRF token");
    let response = post_form(&server, &cookie, "/functions/add_numbers", &fields, Some(&server.url)).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER, "the same site's POST works");
    let response = post_form(&server, &cookie, "/logout", &[], None).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN, "logging out needs the token too");
}

#[tokio::test]
async fn user_strings_are_escaped_and_headers_protect_the_pages() {
    let server = Server::start(&[]);
    let client = server.client();
    let attack = "<script>alert(1)</script>\"><img src=x onerror=alert(1)>javascript:alert(1)";
    let run: Value = server
        .submit(json!({"task_title": "quote_order", "payload": {
            "address": {"street": attack, "city": attack},
            "items": [{"sku": attack, "quantity": 1, "unit_price_cents": 100}],
            "note": attack
        }}))
        .await;
    let id = run["task_id"].as_str().unwrap().to_owned();
    let done = wait_final(&client, &server, &id).await;
    assert_eq!(done["status"], "completed", "{done}");
    // Wait for the log line that carries the SKU.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        let logs: Value =
            client.get(server.at(&format!("/api/v1/tasks/{id}/logs"))).send().await.unwrap().json().await.unwrap();
        if !logs["items"].as_array().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let cookie = session_cookie(&server).await;
    for path in [
        format!("/runs/{id}"),
        "/runs".to_owned(),
        "/functions/quote_order".to_owned(),
        format!("/functions/quote_order?from={id}"),
    ] {
        let response = browserless().get(server.at(&path)).header("cookie", &cookie).send().await.unwrap();
        let headers = response.headers().clone();
        let html = response.text().await.unwrap();
        assert!(!html.contains("<script>alert"), "{path} shows a script tag unescaped");
        assert!(!html.contains("<img src=x"), "{path} shows an img tag unescaped");
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"), "{csp}");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(headers["x-frame-options"], "DENY");
    }
    let (_, html) = page(&server, &cookie, &format!("/runs/{id}")).await;
    assert!(html.contains("&#60;script&#62;alert(1)&#60;/script&#62;"), "the text is there, escaped");
}

/// A run with no log lines draws no log box (issue 22: an empty list was
/// drawn as a dark bar): the list is empty, so `.log:empty` hides it, and
/// "No log lines." says so.
#[tokio::test]
async fn an_empty_log_draws_no_box() {
    let server = Server::start(&[]);
    let run = server
        .submit(serde_json::json!({"task_title": "add_numbers", "payload": {"a": 1, "b": 2}, "delay_seconds": 3600}))
        .await;
    let id = run["task_id"].as_str().unwrap();
    let cookie = session_cookie(&server).await;
    let (status, html) = page(&server, &cookie, &format!("/runs/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains(r#"<ol id="log" class="log" data-last-seq="0"></ol>"#), "{html}");
    assert!(html.contains(r#"<p id="no-log" class="empty">No log lines.</p>"#), "{html}");
}
