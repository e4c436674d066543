//! The web UI in a real headless Chromium, driven over WebDriver
//! (`chromedriver`, Debian's `chromium-driver`): log in through the printed
//! link, run `add_numbers` from its form and watch it finish without a
//! reload, see a wrong value's message beside its field, cancel a
//! `sleep_for_seconds`, read the history; fill a form of every schema shape
//! (variants, lists, a map, an optional struct). The same runs write the
//! README's screenshots into `resource/`.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::support::server::Server;

/// `chromedriver` on a free port, killed when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tool(name: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|dir| std::path::Path::new(dir).join(name)).find(|p| p.exists())
}

/// Starts `chromedriver`; `None` (after a loud SKIPPED) when the machine has
/// no Chromium, unless the test command requires it.
async fn driver() -> Option<Driver> {
    let (Some(chromedriver), Some(_)) = (tool("chromedriver"), tool("chromium").or_else(|| tool("chromium-browser")))
    else {
        assert!(
            std::env::var_os("TASKFLOW_REQUIRE_TOOLS").is_none(),
            "chromium and chromedriver are required under the test command (apt-get install chromium chromium-driver)"
        );
        println!("SKIPPED: no chromium/chromedriver on PATH (./scripts/test installs them)");
        return None;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(chromedriver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let driver = Driver { child, url: format!("http://127.0.0.1:{port}") };
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not start listening");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Some(driver)
}

async fn browser(driver: &Driver) -> Client {
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".to_owned(),
        json!({"args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1200,900"]}),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector).capabilities(capabilities).connect(&driver.url).await.expect("a Chromium session")
}

/// Polls `check` until it holds (at most 30 s).
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn text(client: &Client, css: &str) -> String {
    match client.find(Locator::Css(css)).await {
        Ok(element) => element.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

async fn screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../resource").join(name);
    std::fs::write(&path, png).unwrap();
}

async fn fill(client: &Client, css: &str, value: &str) {
    let input = client.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}"));
    input.clear().await.unwrap_or_else(|e| panic!("{css}: {e}"));
    input.send_keys(value).await.unwrap_or_else(|e| panic!("{css}: {e}"));
}

#[tokio::test]
async fn a_person_runs_tasks_from_the_browser_and_watches_them_live() {
    let Some(driver) = driver().await else { return };
    let server = Server::start(&[]);
    let client = browser(&driver).await;

    // The printed link logs in and lands on the task list.
    client.goto(&server.login_link).await.unwrap();
    assert_eq!(client.current_url().await.unwrap().path(), "/");
    assert!(text(&client, "#task-list").await.contains("Add two numbers together"));
    // The filter box narrows the list as one types.
    screenshot(&client, "task-list.png").await;
    fill(&client, "#task-filter", "math").await;
    let shop_card = client.find(Locator::Css("li.card[data-search*='shop']")).await.unwrap();
    assert!(!shop_card.is_displayed().await.unwrap(), "quote_order is filtered out");
    let math_card = client.find(Locator::Css("li.card:first-child")).await.unwrap();
    assert!(math_card.is_displayed().await.unwrap(), "add_numbers stays");

    // add_numbers from its form; the run page turns `completed` and shows 5
    // without a reload (a marker set on the page survives).
    client.find(Locator::Css("a[href='/functions/add_numbers']")).await.unwrap().click().await.unwrap();
    fill(&client, "#f-a", "2").await;
    fill(&client, "#f-b", "3").await;
    client.find(Locator::Id("run-button")).await.unwrap().click().await.unwrap();
    eventually("the run page opens", || async { client.current_url().await.unwrap().path().starts_with("/runs/") })
        .await;
    client.execute("window.__taskflow_marker = 42;", vec![]).await.unwrap();
    eventually("the status turns completed", || async { text(&client, "#status").await == "completed" }).await;
    eventually("the result appears", || async { text(&client, "#result").await == "5" }).await;
    let marker = client.execute("return window.__taskflow_marker;", vec![]).await.unwrap();
    assert_eq!(marker, json!(42), "the page updated live, not by reloading");

    // A wrong value: the browser's message beside the field, nothing sent.
    client.goto(&server.at("/functions/sleep_for_seconds")).await.unwrap();
    fill(&client, "#f-seconds", "-5").await;
    client.find(Locator::Id("run-button")).await.unwrap().click().await.unwrap();
    eventually("the message beside the field", || async { !text(&client, "#f-seconds-error").await.is_empty() }).await;
    assert_eq!(client.current_url().await.unwrap().path(), "/functions/sleep_for_seconds");
    // And one only the server can judge: a message from the server.
    client.goto(&server.at("/functions/quote_order")).await.unwrap();
    fill(&client, "#f-address-street", "1 Main St").await;
    fill(&client, "#f-address-city", "Springfield").await;
    // Typed into the list's raw JSON editor, which wins over its rows.
    client.find(Locator::Css("#f-items > details > summary")).await.unwrap().click().await.unwrap();
    fill(&client, "#f-items-json", r#"[{"sku": "tea", "quantity": "two", "unit_price_cents": 350}]"#).await;
    client.find(Locator::Id("run-button")).await.unwrap().click().await.unwrap();
    eventually("the server's message beside the field", || async {
        text(&client, "#f-items-error").await.contains("items[0].quantity: expected integer")
    })
    .await;

    // sleep_for_seconds, cancelled while it runs.
    client.goto(&server.at("/functions/sleep_for_seconds")).await.unwrap();
    fill(&client, "#f-seconds", "30").await;
    client.find(Locator::Id("run-button")).await.unwrap().click().await.unwrap();
    eventually("it starts running", || async { text(&client, "#status").await == "running" }).await;
    eventually("a log line streams in", || async { text(&client, "#log").await.contains("sleeping for 30s") }).await;
    // Progress as numbers beside the bar: one step a second.
    eventually("the progress says how far", || async { text(&client, "#progress-text").await.ends_with(" / 30") })
        .await;
    screenshot(&client, "run-page.png").await;
    client.find(Locator::Id("cancel-button")).await.unwrap().click().await.unwrap();
    eventually("it is cancelled", || async { text(&client, "#status").await == "cancelled" }).await;

    // Every other example task, from its form to its end.
    let finish = |title: &'static str, fields: &'static [(&'static str, &'static str)]| {
        let client = &client;
        let server = &server;
        async move {
            client.goto(&server.at(&format!("/functions/{title}"))).await.unwrap();
            for (css, value) in fields {
                if value.is_empty() {
                    client.find(Locator::Css(css)).await.unwrap().click().await.unwrap();
                } else {
                    fill(client, css, value).await;
                }
            }
            client.find(Locator::Id("run-button")).await.unwrap().click().await.unwrap();
            eventually(title, || async { matches!(text(client, "#status").await.as_str(), "completed" | "failed") })
                .await;
            (text(client, "#status").await, text(client, "#result").await, text(client, "#error").await)
        }
    };
    let (status, result, _) = finish("multiply_numbers", &[("#f-a", "3.5")]).await;
    assert_eq!(status, "completed");
    assert_eq!(result.parse::<f64>().ok(), Some(7.0), "{result}");
    let (status, _, error) = finish("raise_exception", &[]).await;
    assert_eq!((status.as_str(), error.as_str()), ("failed", "failed: This is a test exception"));
    let (status, result, _) = finish(
        "quote_order",
        &[
            ("#f-address-street", "1 Main St"),
            ("#f-address-city", "Springfield"),
            // A row of the list of items, added by the script ("" clicks).
            ("button[data-add='f-items']", ""),
            ("#f-items-0--sku", "tea"),
            ("#f-items-0--quantity", "2"),
            ("#f-items-0--unit_price_cents", "350"),
            ("#f-note", "ring twice"),
        ],
    )
    .await;
    assert_eq!(status, "completed");
    let quote: serde_json::Value = serde_json::from_str(&result).unwrap();
    assert_eq!(quote["total_cents"], 1200, "{quote}");
    assert_eq!(quote["note"], "ring twice");

    // add_numbers and sleep_for_seconds on the Docker executor, chosen in
    // the form, finish live too (the first run builds the worker image).
    let on_docker = |title: &'static str, fields: &'static [(&'static str, &'static str)]| {
        let client = &client;
        let server = &server;
        async move {
            client.goto(&server.at(&format!("/functions/{title}"))).await.unwrap();
            for (css, value) in fields {
                fill(client, css, value).await;
            }
            client.find(Locator::Css("#f-executor option[value='docker']")).await.unwrap().click().await.unwrap();
            client.find(Locator::Id("run-button")).await.unwrap().click().await.unwrap();
            let deadline = Instant::now() + Duration::from_secs(180);
            while !matches!(text(client, "#status").await.as_str(), "completed" | "failed") {
                assert!(Instant::now() < deadline, "{title} on Docker never finished");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            (text(client, "#status").await, text(client, "#result").await, text(client, "#error").await)
        }
    };
    let health = server.get_json("/health").await;
    let docker = health["executors"].as_array().unwrap().iter().find(|e| e["name"] == "docker").unwrap().clone();
    if docker["available"] == true {
        let (status, result, error) = on_docker("add_numbers", &[("#f-a", "20"), ("#f-b", "22")]).await;
        assert_eq!((status.as_str(), result.as_str()), ("completed", "42"), "{error}");
        let facts = text(&client, ".facts").await;
        assert!(facts.contains("docker"), "the run page names its executor: {facts}");
        let (status, result, error) = on_docker("sleep_for_seconds", &[("#f-seconds", "1")]).await;
        assert_eq!((status.as_str(), result.as_str()), ("completed", "\"great nap!\""), "{error}");
        eventually("the container's log line streams in", || async {
            text(&client, "#log").await.contains("sleeping for 1s")
        })
        .await;
    } else {
        assert!(
            std::env::var_os("TASKFLOW_REQUIRE_DOCKER").is_none(),
            "the Docker executor is required under the test command: {docker}"
        );
        println!("SKIPPED: the Docker part of the browser test: {}", docker["detail"]);
    }

    // The history lists them all, with their status.
    client.goto(&server.at("/runs")).await.unwrap();
    let history = text(&client, "#history").await;
    for needle in
        ["add_numbers", "sleep_for_seconds", "quote_order", "raise_exception", "completed", "cancelled", "failed"]
    {
        assert!(history.contains(needle), "the history shows {needle}: {history}");
    }
    // Times read as the reader's, relative, with the exact one as tooltip.
    let submitted = client.find(Locator::Css("#history tbody tr time")).await.unwrap();
    let shown = submitted.text().await.unwrap();
    let tooltip = submitted.attr("title").await.unwrap().unwrap_or_default();
    assert!(shown == "just now" || shown.ends_with(" ago"), "a relative time: {shown}");
    assert!(tooltip.contains('T') && tooltip.contains('Z'), "the UTC time as the tooltip: {tooltip}");
    // The history follows new runs without a reload.
    let fresh = server.submit(json!({"task_title": "add_numbers", "payload": {"a": 20, "b": 22}})).await;
    let id = fresh["task_id"].as_str().unwrap().to_owned();
    let row = format!("#history tr[data-task-id=\"{id}\"] [data-role=status]");
    eventually("the new run appears and completes in the history", || async {
        text(&client, &row).await == "completed"
    })
    .await;
    screenshot(&client, "history.png").await;
    client.close().await.unwrap();
}

/// What `tests/bin/forms_app.rs`'s form sends: a variant with fields, an
/// internally tagged enum, rows added to a list of structs, a list of
/// strings and a map, an optional struct ticked on, a unit struct.
#[tokio::test]
async fn a_form_of_every_shape_sends_the_payload_it_shows() {
    let Some(driver) = driver().await else { return };
    let server = Server::start_binary(env!("CARGO_BIN_EXE_forms_app"), &[], &[]);
    let client = browser(&driver).await;
    client.goto(&server.login_link).await.unwrap();
    client.goto(&server.at("/functions/place_order")).await.unwrap();
    let click = |css: &'static str| {
        let client = &client;
        async move { client.find(Locator::Css(css)).await.unwrap().click().await.unwrap() }
    };
    let shown = |css: &'static str| {
        let client = &client;
        async move { client.find(Locator::Css(css)).await.unwrap().is_displayed().await.unwrap() }
    };

    // The variant selector shows only the chosen variant's fields.
    assert!(!shown("#f-delivery-Courier").await, "no variant chosen yet");
    click("#f-delivery--variant option[value='Courier']").await;
    assert!(shown("#f-delivery-Courier").await);
    fill(&client, "#f-delivery-Courier-zone", "north").await;
    click("#f-delivery-Courier-express").await;
    click("#f-payment--variant option[value='Card']").await;
    fill(&client, "#f-payment-Card-last4", "4242").await;
    // Two rows added to the list of structs, one to the list of strings.
    assert!(client.find(Locator::Css("#f-lines .item")).await.is_err(), "the spare row is the script's to drop");
    click("button[data-add='f-lines']").await;
    click("button[data-add='f-lines']").await;
    fill(&client, "#f-lines-0--sku", "tea").await;
    fill(&client, "#f-lines-0--quantity", "2").await;
    fill(&client, "#f-lines-1--sku", "cake").await;
    fill(&client, "#f-lines-1--quantity", "1").await;
    click("button[data-add='f-tags']").await;
    fill(&client, "#f-tags-0-", "fragile").await;
    // Two rows of the map, a third added and removed.
    for _ in 0..3 {
        click("button[data-add='f-headers']").await;
    }
    fill(&client, "#f-headers-0--key", "x-id").await;
    fill(&client, "#f-headers-0--value", "7").await;
    fill(&client, "#f-headers-1--key", "accept").await;
    fill(&client, "#f-headers-1--value", "json").await;
    click("#f-headers-2-row button[data-remove]").await;
    // The optional struct, ticked on.
    assert!(!shown("#f-gift-message").await, "an unticked optional struct hides its fields");
    click("#f-gift-include").await;
    fill(&client, "#f-gift-message", "happy birthday").await;
    client.set_window_size(1200, 2000).await.unwrap();
    client.execute("window.scrollTo(0, 0); document.activeElement.blur();", vec![]).await.unwrap();
    screenshot(&client, "task-form.png").await;
    client.set_window_size(1200, 900).await.unwrap();
    click("#run-button").await;
    eventually("the run page opens", || async { client.current_url().await.unwrap().path().starts_with("/runs/") })
        .await;
    eventually("the run completes", || async { text(&client, "#status").await == "completed" }).await;
    assert_eq!(text(&client, "#result").await, "3");
    let url = client.current_url().await.unwrap();
    let id = url.path().strip_prefix("/runs/").unwrap();
    let run = server.get_json(&format!("/api/v1/tasks/{id}")).await;
    assert_eq!(
        run["payload"],
        json!({
            "delivery": {"Courier": {"zone": "north", "express": true}},
            "payment": {"type": "Card", "last4": "4242"},
            "lines": [{"sku": "tea", "quantity": 2}, {"sku": "cake", "quantity": 1}],
            "tags": ["fragile"],
            "headers": {"x-id": "7", "accept": "json"},
            "confirmed": null,
            "gift": {"message": "happy birthday"}
        })
    );

    // Only the server knows last4 needs four characters: its message lands
    // beside that field, inside the chosen variant.
    client.goto(&server.at("/functions/place_order")).await.unwrap();
    click("#f-delivery--variant option[value='Pickup']").await;
    click("#f-payment--variant option[value='Card']").await;
    fill(&client, "#f-payment-Card-last4", "42").await;
    click("#run-button").await;
    eventually("the server's message beside the nested field", || async {
        text(&client, "#f-payment-Card-last4-error").await.contains("at least 4")
    })
    .await;
    assert_eq!(client.current_url().await.unwrap().path(), "/functions/place_order");
    assert!(shown("#f-payment-Card").await, "the chosen variant stays chosen");
    client.close().await.unwrap();
}

/// A form over the server's body limit is not sent: the message beside Run
/// names the limit and how to raise it, and the pasted text stays. Without
/// the script's check, the 413 page says the same, and Back keeps the text.
#[tokio::test]
async fn a_form_over_the_body_limit_keeps_what_was_typed() {
    let Some(driver) = driver().await else { return };
    let server = Server::start_binary(env!("CARGO_BIN_EXE_forms_app"), &["--max-body-bytes", "2048"], &[]);
    let client = browser(&driver).await;
    client.goto(&server.login_link).await.unwrap();
    client.goto(&server.at("/functions/keep_note")).await.unwrap();
    let long = "too long ".repeat(300);
    // Pasted: the value set at once, as a paste does.
    client
        .execute(
            "var el = document.getElementById('f-note'); el.value = arguments[0]; \
             el.dispatchEvent(new Event('input', {bubbles: true}));",
            vec![json!(long)],
        )
        .await
        .unwrap();
    client.find(Locator::Id("run-button")).await.unwrap().click().await.unwrap();
    eventually("the message beside Run", || async { !text(&client, "#run-error").await.is_empty() }).await;
    let message = text(&client, "#run-error").await;
    assert!(message.contains("2 KiB (2048 bytes)") && message.contains("--max-body-bytes"), "{message}");
    assert!(message.contains("TASKFLOW_MAX_BODY_BYTES"), "{message}");
    assert_eq!(client.current_url().await.unwrap().path(), "/functions/keep_note", "nothing was sent");
    let note = client.find(Locator::Id("f-note")).await.unwrap();
    assert_eq!(note.prop("value").await.unwrap().as_deref(), Some(long.as_str()), "the text stays");
    let runs = server.get_json("/api/v1/tasks?task_title=keep_note").await;
    assert_eq!(runs["total"], 0, "no run: {runs}");

    // Without the check (as without the script): the server's 413 page.
    client
        .execute("document.getElementById('task-form').removeAttribute('data-max-body-bytes');", vec![])
        .await
        .unwrap();
    client.find(Locator::Id("run-button")).await.unwrap().click().await.unwrap();
    eventually("the 413 page", || async { text(&client, "h1").await == "Form too large" }).await;
    let message = text(&client, ".error-message").await;
    for needle in ["2 KiB (2048 bytes)", "--max-body-bytes", "TASKFLOW_MAX_BODY_BYTES", "Go Back"] {
        assert!(message.contains(needle), "the page says {needle}: {message}");
    }
    client.back().await.unwrap();
    eventually("Back keeps the text", || async {
        match client.find(Locator::Id("f-note")).await {
            Ok(note) => note.prop("value").await.ok().flatten().as_deref() == Some(long.as_str()),
            Err(_) => false,
        }
    })
    .await;
    let runs = server.get_json("/api/v1/tasks?task_title=keep_note").await;
    assert_eq!(runs["total"], 0, "still no run: {runs}");
    client.close().await.unwrap();
}

/// Rows of a list move up and down, and the run gets them in the order
/// shown: three rows each of the list of structs and of strings, the last
/// moved up; a row of strings added and left empty is `""`.
#[tokio::test]
async fn rows_of_a_list_move_up_and_down() {
    let Some(driver) = driver().await else { return };
    let server = Server::start_binary(env!("CARGO_BIN_EXE_forms_app"), &[], &[]);
    let client = browser(&driver).await;
    client.goto(&server.login_link).await.unwrap();
    client.goto(&server.at("/functions/place_order")).await.unwrap();
    let click = |css: String| {
        let client = &client;
        async move { client.find(Locator::Css(&css)).await.unwrap_or_else(|e| panic!("{css}: {e}")).click().await.unwrap() }
    };
    click("#f-delivery--variant option[value='Pickup']".into()).await;
    click("#f-payment--variant option[value='Cash']".into()).await;
    for (i, sku) in ["tea", "cake", "jam"].iter().enumerate() {
        click("button[data-add='f-lines']".into()).await;
        fill(&client, &format!("#f-lines-{i}--sku"), sku).await;
        fill(&client, &format!("#f-lines-{i}--quantity"), &(i + 1).to_string()).await;
        click("button[data-add='f-tags']".into()).await;
        fill(&client, &format!("#f-tags-{i}-"), &format!("t{i}")).await;
    }
    let up = |list: &str, i: usize| format!("#f-{list}-{i}-row > .item-head > button[data-move=up]");
    let down = |list: &str, i: usize| format!("#f-{list}-{i}-row > .item-head > button[data-move=down]");
    let disabled = |css: String| {
        let client = &client;
        async move {
            client.find(Locator::Css(&css)).await.unwrap().prop("disabled").await.unwrap().as_deref() == Some("true")
        }
    };
    assert!(
        disabled(up("lines", 0)).await && disabled(down("lines", 2)).await,
        "no way up from the top, down from the bottom"
    );
    assert!(!disabled(up("lines", 2)).await);
    let label = client.find(Locator::Css(&up("tags", 2))).await.unwrap().attr("aria-label").await.unwrap();
    assert_eq!(label.as_deref(), Some("Move this row up"));
    click(up("lines", 2)).await;
    click(up("tags", 2)).await;
    // The moved row is now the second, its fields renamed with it.
    assert_eq!(
        client.find(Locator::Css("#f-lines-1--sku")).await.unwrap().prop("value").await.unwrap().as_deref(),
        Some("jam")
    );
    assert_eq!(text(&client, "#f-lines-1-row .item-n").await, "#2");
    // And back down and up again, the first row too.
    click(down("tags", 1)).await;
    click(up("tags", 2)).await;
    click(down("tags", 0)).await;
    click(up("tags", 1)).await;
    // A row of strings left empty is an empty string.
    click("button[data-add='f-tags']".into()).await;
    click("#run-button".into()).await;
    eventually("the run page opens", || async { client.current_url().await.unwrap().path().starts_with("/runs/") })
        .await;
    let url = client.current_url().await.unwrap();
    let run = server.get_json(&format!("/api/v1/tasks/{}", url.path().strip_prefix("/runs/").unwrap())).await;
    assert_eq!(
        run["payload"]["lines"],
        json!([{"sku": "tea", "quantity": 1}, {"sku": "jam", "quantity": 3}, {"sku": "cake", "quantity": 2}])
    );
    assert_eq!(run["payload"]["tags"], json!(["t0", "t2", "t1", ""]));
    client.close().await.unwrap();
}

/// A composite's raw JSON, once filled, hides and disables its fields (and
/// an optional struct's "include" box), which come back when it is
/// cleared; the run gets the raw JSON.
#[tokio::test]
async fn filled_raw_json_sets_a_composites_fields_aside() {
    let Some(driver) = driver().await else { return };
    let server = Server::start_binary(env!("CARGO_BIN_EXE_forms_app"), &[], &[]);
    let client = browser(&driver).await;
    client.goto(&server.login_link).await.unwrap();
    client.goto(&server.at("/functions/place_order")).await.unwrap();
    let click = |css: &'static str| {
        let client = &client;
        async move { client.find(Locator::Css(css)).await.unwrap().click().await.unwrap() }
    };
    let shown = |css: &'static str| {
        let client = &client;
        async move { client.find(Locator::Css(css)).await.unwrap().is_displayed().await.unwrap() }
    };
    let enabled = |css: &'static str| {
        let client = &client;
        async move { client.find(Locator::Css(css)).await.unwrap().is_enabled().await.unwrap() }
    };
    click("#f-delivery--variant option[value='Pickup']").await;
    click("#f-payment--variant option[value='Cash']").await;
    click("button[data-add='f-lines']").await;
    fill(&client, "#f-lines-0--sku", "from the fields").await;
    fill(&client, "#f-lines-0--quantity", "9").await;
    assert!(shown("#f-lines-0--sku").await && !shown("#f-lines-raw-note").await);

    click("#f-lines > details > summary").await;
    fill(&client, "#f-lines-json", r#"[{"sku": "raw", "quantity": 4}]"#).await;
    assert!(!shown("#f-lines-0--sku").await, "the rows are set aside");
    assert!(!shown("button[data-add='f-lines']").await);
    assert!(!enabled("#f-lines-0--sku").await, "and not sent");
    assert!(shown("#f-lines-raw-note").await, "the note says the raw JSON wins");
    fill(&client, "#f-lines-json", "").await;
    assert!(shown("#f-lines-0--sku").await && enabled("#f-lines-0--sku").await, "cleared: the rows are back");
    assert!(!shown("#f-lines-raw-note").await);
    assert_eq!(
        client.find(Locator::Css("#f-lines-0--sku")).await.unwrap().prop("value").await.unwrap().as_deref(),
        Some("from the fields"),
        "with what was typed"
    );

    // An optional struct: its "include" box is set aside too.
    click("#f-gift-include").await;
    fill(&client, "#f-gift-message", "from the fields").await;
    click("#f-gift > details > summary").await;
    fill(&client, "#f-gift-json", r#"{"message": "raw"}"#).await;
    assert!(!shown("#f-gift-message").await && !enabled("#f-gift-include").await);

    fill(&client, "#f-lines-json", r#"[{"sku": "raw", "quantity": 4}]"#).await;
    click("#run-button").await;
    eventually("the run page opens", || async { client.current_url().await.unwrap().path().starts_with("/runs/") })
        .await;
    let url = client.current_url().await.unwrap();
    let run = server.get_json(&format!("/api/v1/tasks/{}", url.path().strip_prefix("/runs/").unwrap())).await;
    assert_eq!(run["payload"]["lines"], json!([{"sku": "raw", "quantity": 4}]));
    assert_eq!(run["payload"]["gift"], json!({"message": "raw"}));
    client.close().await.unwrap();
}

/// The history's "N runs" follows live: one more for a new run the page's
/// filter takes (none for one it does not), one fewer for a deleted one.
#[tokio::test]
async fn the_history_count_follows_new_and_deleted_runs() {
    let Some(driver) = driver().await else { return };
    let server = Server::start_binary(env!("CARGO_BIN_EXE_forms_app"), &[], &[]);
    let client = browser(&driver).await;
    client.goto(&server.login_link).await.unwrap();
    let connected = || async {
        let table = client.find(Locator::Id("history")).await.unwrap();
        table.attr("data-connected").await.unwrap().as_deref() == Some("true")
    };
    let order = json!({"task_title": "place_order", "payload": {
        "delivery": "Pickup", "payment": {"type": "Cash"}, "lines": [], "tags": [], "headers": {}, "confirmed": null
    }});
    let note = json!({"task_title": "keep_note", "payload": {"note": "hi"}});
    let row_status = |id: &str| format!("#history tr[data-task-id=\"{id}\"] [data-role=status]");

    client.goto(&server.at("/runs?task_title=keep_note")).await.unwrap();
    eventually("the history listens", connected).await;
    assert_eq!(text(&client, "#history-count").await, "0 runs");
    // Another task's run first: events arrive in order, so once the note's
    // row is there, the order's would have been counted already.
    server.submit(order.clone()).await;
    let first = server.submit(note.clone()).await["task_id"].as_str().unwrap().to_owned();
    eventually("the note's run completes", || async { text(&client, &row_status(&first)).await == "completed" }).await;
    assert_eq!(text(&client, "#history-count").await, "1 run", "the order's run is not counted");
    let second = server.submit(note.clone()).await["task_id"].as_str().unwrap().to_owned();
    eventually("two runs", || async { text(&client, "#history-count").await == "2 runs" }).await;
    eventually("the second completes", || async { text(&client, &row_status(&second)).await == "completed" }).await;
    let response = server.client().delete(server.at(&format!("/api/v1/tasks/{first}"))).send().await.unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::NO_CONTENT);
    eventually("one run again", || async { text(&client, "#history-count").await == "1 run" }).await;
    assert!(client.find(Locator::Css(&row_status(&first))).await.is_err(), "the deleted run's row is gone");

    // Unfiltered: every run counts, and so does every deletion.
    client.goto(&server.at("/runs")).await.unwrap();
    eventually("the history listens", connected).await;
    assert_eq!(text(&client, "#history-count").await, "2 runs");
    let third = server.submit(order).await["task_id"].as_str().unwrap().to_owned();
    eventually("three runs", || async { text(&client, "#history-count").await == "3 runs" }).await;
    eventually("the third completes", || async { text(&client, &row_status(&third)).await == "completed" }).await;
    let response = server.client().delete(server.at(&format!("/api/v1/tasks/{second}"))).send().await.unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::NO_CONTENT);
    eventually("two runs again", || async { text(&client, "#history-count").await == "2 runs" }).await;
    client.close().await.unwrap();
}
