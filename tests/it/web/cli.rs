//! The app's command line, driven as a subprocess of the example binary.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

fn run(args: &[&str], stdin: Option<&str>) -> Output {
    run_binary(env!("CARGO_BIN_EXE_simple_tasks"), args, stdin)
}

fn run_binary(binary: &str, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(binary)
        .args(args)
        .env_remove("TASKFLOW_ADDR")
        .env_remove("TASKFLOW_DATA_DIR")
        .env_remove("TASKFLOW_DATABASE_URL")
        .env_remove("TASKFLOW_SECRET")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the example binary runs");
    let mut pipe = child.stdin.take().unwrap();
    if let Some(input) = stdin {
        pipe.write_all(input.as_bytes()).unwrap();
    }
    drop(pipe);
    child.wait_with_output().unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn call_with_flags_prints_the_result() {
    let output = run(&["call", "add_numbers", "--a", "2", "--b", "3"], None);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), "5\n");
    assert!(stderr(&output).contains("adding 2 and 3"), "printed output goes to stderr: {}", stderr(&output));
}

#[test]
fn call_with_a_wrong_payload_names_the_field_and_fails() {
    let output = run(&["call", "add_numbers", "--a", "2", "--b", "x"], None);
    assert_eq!(output.status.code(), Some(1));
    assert!(stdout(&output).is_empty());
    assert!(stderr(&output).contains(r#"payload.b: expected integer, found string "x""#), "{}", stderr(&output));

    let output = run(&["call", "add_numbers", "--a", "2"], None);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("payload.b: required field is missing"), "{}", stderr(&output));
}

#[test]
fn call_accepts_a_json_payload_and_structured_flags() {
    let output = run(&["call", "add_numbers", "--payload", r#"{"a": 40, "b": 2}"#], None);
    assert_eq!(stdout(&output), "42\n");
    let output = run(&["call", "add_numbers", "--payload={\"a\": 40, \"b\": 2}", "--b=-40"], None);
    assert_eq!(stdout(&output), "0\n", "flags override the payload's fields: {}", stderr(&output));

    let output = run(
        &[
            "call",
            "quote_order",
            "--address",
            r#"{"street": "1 Main St", "city": "Springfield"}"#,
            "--items",
            r#"{"sku": "tea", "quantity": 2, "unit_price_cents": 350}"#,
            "--items",
            r#"{"sku": "cup", "quantity": 1, "unit_price_cents": 900}"#,
            "--shipping",
            "express",
            "--note",
            "42",
        ],
        None,
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let quote: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(
        quote,
        json!({"total_cents": 700 + 900 + 1500, "items": 3, "ship_to": "1 Main St, Springfield", "note": "42"})
    );
    assert!(stderr(&output).contains("2 x tea = 700 cents"), "log lines go to stderr: {}", stderr(&output));
}

#[test]
fn a_payload_comes_from_a_file_or_standard_input() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("payload.json");
    std::fs::write(&file, r#"{"a": 40, "b": 2}"#).unwrap();
    let from_file = format!("@{}", file.display());
    let output = run(&["call", "add_numbers", "--payload", &from_file], None);
    assert_eq!(stdout(&output), "42\n", "{}", stderr(&output));
    let output = run(&["call", "add_numbers", &format!("--payload={from_file}"), "--b", "0"], None);
    assert_eq!(stdout(&output), "40\n", "flags override a file's fields too: {}", stderr(&output));
    let output = run(&["call", "add_numbers", "--payload", "-"], Some(r#"{"a": 1, "b": 2}"#));
    assert_eq!(stdout(&output), "3\n", "{}", stderr(&output));

    // `submit` takes the same arguments.
    let data_dir = dir.path().to_str().unwrap();
    let output = run(&["--data-dir", data_dir, "submit", "add_numbers", "--payload", &from_file], None);
    assert!(output.status.success(), "{}", stderr(&output));
    let run_json: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(run_json["payload"], json!({"a": 40, "b": 2}));

    let missing = dir.path().join("missing.json");
    let output = run(&["call", "add_numbers", "--payload", &format!("@{}", missing.display())], None);
    assert_eq!(output.status.code(), Some(1));
    let text = stderr(&output);
    assert!(text.contains(&format!("cannot read the payload file `{}`", missing.display())), "{text}");
    std::fs::write(&file, "{oops").unwrap();
    let output = run(&["call", "add_numbers", "--payload", &from_file], None);
    assert!(stderr(&output).contains(&format!("the payload file `{}` is not valid JSON", file.display())));
    let output = run(&["call", "add_numbers", "--payload", "-"], Some("[1, 2]"));
    assert!(stderr(&output).contains("standard input (`--payload -`) must be a JSON object"), "{}", stderr(&output));
}

#[test]
fn call_applies_defaults() {
    let output = run(&["call", "multiply_numbers", "--a", "3"], None);
    assert_eq!(stdout(&output), "6.0\n", "{}", stderr(&output));
}

#[test]
fn a_failing_task_prints_its_error() {
    let output = run(&["call", "raise_exception"], None);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("This is a test exception"), "{}", stderr(&output));
}

#[test]
fn command_line_mistakes_say_what_to_fix() {
    let output = run(&["call", "no_such_task"], None);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("unknown task `no_such_task`"), "{}", stderr(&output));

    let output = run(&["call", "add_numbers", "--c", "1"], None);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("unknown argument `--c` for task `add_numbers`; expected --a, --b"),
        "{}",
        stderr(&output)
    );

    let output = run(&["call", "add_numbers", "--payload", "{oops"], None);
    assert!(stderr(&output).contains("`--payload` is not valid JSON"), "{}", stderr(&output));

    let output = run(&["call", "add_numbers", "--a"], None);
    assert!(stderr(&output).contains("`--a` needs a value"), "{}", stderr(&output));

    let output = run(&["frobnicate"], None);
    assert_eq!(output.status.code(), Some(2), "clap's usage error");
}

#[test]
fn call_help_lists_the_flags_from_the_schema() {
    let output = run(&["call", "quote_order", "--help"], None);
    assert!(output.status.success());
    let help = stdout(&output);
    assert!(help.contains("--address <object>  where the order goes"), "{help}");
    assert!(help.contains(r#"--shipping <"standard"|"express">  how fast it ships [default: "standard"]"#), "{help}");
    assert!(help.contains("--note <string>  a message for the packer [optional]"), "{help}");
}

#[test]
fn help_after_any_command_prints_its_usage() {
    for command in ["serve", "list", "call", "submit", "status", "token"] {
        for help in ["--help", "-h"] {
            let output = run(&[command, help], None);
            assert!(output.status.success(), "`{command} {help}`: {}", stderr(&output));
            let usage = stdout(&output);
            assert!(usage.contains(&format!("Usage: simple_tasks {command}")), "`{command} {help}`: {usage}");
        }
    }
    let usage = stdout(&run(&["submit", "--help"], None));
    assert!(usage.contains("<TITLE> --help"), "it says how to see a task's flags: {usage}");
    // With a title, the task's flags.
    let output = run(&["submit", "add_numbers", "--help"], None);
    assert!(output.status.success(), "{}", stderr(&output));
    let help = stdout(&output);
    assert!(help.contains("Usage: simple_tasks submit add_numbers [--payload <JSON>]"), "{help}");
    assert!(help.contains("--a <integer>  the first addend"), "{help}");
}

#[test]
fn list_shows_title_signature_and_description() {
    let output = run(&["list"], None);
    assert!(output.status.success());
    let text = stdout(&output);
    for expected in [
        "add_numbers(a: i64, b: i64) -> i64",
        "Add two numbers together",
        "async sleep_for_seconds(seconds: u64) -> String",
        "raise_exception",
        "multiply_numbers",
    ] {
        assert!(text.contains(expected), "{expected:?} missing from:\n{text}");
    }
}

#[test]
fn worker_entry_writes_exactly_one_frame() {
    let output = run(&["__run", "add_numbers"], Some(r#"{"a": 1, "b": 2}"#));
    assert!(output.status.success());
    assert_eq!(stdout(&output), "{\"ok\":3}\n", "the task's println! must not reach stdout");
    assert!(stderr(&output).contains("adding 1 and 2"), "it goes to stderr: {}", stderr(&output));

    let output = run(&["__run", "add_numbers"], Some(r#"{"a": 1}"#));
    assert_eq!(output.status.code(), Some(1));
    let frame: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(frame["error"]["kind"], "payload");
    assert_eq!(frame["error"]["issues"][0], json!({"path": "payload.b", "message": "required field is missing"}));

    let output = run(&["__run", "sleep_for_seconds"], Some(r#"{"seconds": 0}"#));
    assert_eq!(stdout(&output), "{\"ok\":\"great nap!\"}\n");
    assert!(stderr(&output).contains("[info] sleeping for 0s"), "{}", stderr(&output));

    let output = run(&["__run", "add_numbers"], Some("not json"));
    let frame: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(frame["error"]["kind"], "payload");
    assert!(frame["error"]["message"].as_str().unwrap().starts_with("payload: not valid JSON"));

    let output = run(&["__run", "nope"], Some("{}"));
    let frame: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(frame["error"]["kind"], "unknown_task");
}

/// Starts `serve` (or the default command), reads its banner up to the
/// line about stopping, and returns the child and the banner.
fn start_serving(args: &[&str], env: &[(&str, &str)]) -> (std::process::Child, String) {
    use std::io::BufRead;
    let mut command = Command::new(env!("CARGO_BIN_EXE_simple_tasks"));
    command
        .args(args)
        .env_remove("TASKFLOW_ADDR")
        .env_remove("TASKFLOW_DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().unwrap();
    let mut reader = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut banner = String::new();
    while !banner.contains("SIGTERM") {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap() == 0 {
            panic!("serve ended early: {banner}");
        }
        banner.push_str(&line);
    }
    (child, banner)
}

/// Sends SIGTERM and waits for a clean exit.
fn stop(child: std::process::Child) -> String {
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "serve exits cleanly on SIGTERM: {}", stderr(&output));
    stderr(&output)
}

#[test]
fn serve_runs_the_engine_on_the_data_dir_until_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    let (child, banner) = start_serving(&["serve", "--addr", "127.0.0.1:9999", "--data-dir", data_dir], &[]);
    assert!(banner.contains("http://127.0.0.1:9999"), "{banner}");
    assert!(banner.contains(&format!("{data_dir}/taskflow.db")), "{banner}");
    assert!(banner.contains("Log in: http://127.0.0.1:9999/login?token="), "{banner}");
    assert!(dir.path().join("taskflow.db").exists());
    let log = stop(child);
    assert!(log.contains("stopping: no new runs"), "{log}");

    let output = run(&["serve", "--addr", "not-an-address"], None);
    assert_eq!(output.status.code(), Some(2));

    // `serve` is the default command and reads the environment.
    let (child, banner) = start_serving(&[], &[("TASKFLOW_ADDR", "127.0.0.1:7777"), ("TASKFLOW_DATA_DIR", data_dir)]);
    assert!(banner.contains("http://127.0.0.1:7777"), "{banner}");
    stop(child);
}

#[test]
fn submitted_runs_are_stored_and_executed_by_serve() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    let output = run(&["--data-dir", data_dir, "submit", "add_numbers", "--a", "20", "--b", "22"], None);
    assert!(output.status.success(), "{}", stderr(&output));
    let run_json: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(run_json["status"], "pending");
    assert_eq!(run_json["payload"], json!({"a": 20, "b": 22}));
    // The REST API's shape, not the core's: `task_id`, times in RFC 3339.
    let id = run_json["task_id"].as_str().unwrap_or_else(|| panic!("no `task_id`: {run_json}")).to_owned();
    assert!(run_json.get("id").is_none(), "{run_json}");
    assert!(run_json["created_at"].as_str().is_some_and(|t| t.ends_with('Z') && t.contains('T')), "{run_json}");

    let output = run(&["--data-dir", data_dir, "submit", "add_numbers", "--a", "x"], None);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains(r#"payload.a: expected integer, found string "x""#), "{}", stderr(&output));

    let (child, banner) = start_serving(&["serve", "--addr", "127.0.0.1:0", "--data-dir", data_dir], &[]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let finished = loop {
        let output = run(&["--data-dir", data_dir, "status", &id], None);
        assert!(output.status.success(), "{}", stderr(&output));
        let run_json: Value = serde_json::from_str(&stdout(&output)).unwrap();
        if run_json["status"] == "completed" {
            break run_json;
        }
        assert!(std::time::Instant::now() < deadline, "the run never completed: {run_json}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    // `status` prints exactly what the REST API answers for the run.
    let api = banner.split("API: ").nth(1).and_then(|rest| rest.split(' ').next()).unwrap().to_owned();
    let token = stdout(&run(&["--data-dir", data_dir, "token"], None)).trim().to_owned();
    let rest: Value = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
        let response =
            reqwest::Client::new().get(format!("{api}/tasks/{id}")).bearer_auth(&token).send().await.unwrap();
        response.json().await.unwrap()
    });
    assert_eq!(finished, rest, "`status` and GET /api/v1/tasks/{{task_id}} disagree");
    let log = stop(child);
    assert_eq!(finished["result"], 42);
    assert!(log.contains("adding 20 and 22"), "what tasks print goes to serve's stderr: {log}");

    let output = run(&["--data-dir", data_dir, "status", "not-a-run-id"], None);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("is not a run id"), "{}", stderr(&output));
}

/// A running run's progress is on record: in `status` and the REST run,
/// not only on the WebSocket.
#[test]
fn status_and_the_rest_run_show_a_running_runs_progress() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    let output = run(&["--data-dir", data_dir, "submit", "sleep_for_seconds", "--seconds", "60"], None);
    assert!(output.status.success(), "{}", stderr(&output));
    let id = serde_json::from_str::<Value>(&stdout(&output)).unwrap()["task_id"].as_str().unwrap().to_owned();
    let (child, banner) = start_serving(&["serve", "--addr", "127.0.0.1:0", "--data-dir", data_dir], &[]);
    // It reports once a second: wait for the store to have a report.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        let output = run(&["--data-dir", data_dir, "status", &id], None);
        assert!(output.status.success(), "{}", stderr(&output));
        let run_json: Value = serde_json::from_str(&stdout(&output)).unwrap();
        if run_json["progress"]["done"].as_u64().is_some_and(|done| done >= 1) {
            break run_json;
        }
        assert!(std::time::Instant::now() < deadline, "no progress stored: {run_json}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(status["status"], "running", "{status}");
    assert_eq!(status["progress"]["total"], 60, "{status}");

    let api = banner.split("API: ").nth(1).and_then(|rest| rest.split(' ').next()).unwrap().to_owned();
    let token = stdout(&run(&["--data-dir", data_dir, "token"], None)).trim().to_owned();
    let rest: Value = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
        let client = reqwest::Client::new();
        let rest: Value =
            client.get(format!("{api}/tasks/{id}")).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
        let cancelled = client.post(format!("{api}/tasks/{id}/cancel")).bearer_auth(&token).send().await.unwrap();
        assert!(cancelled.status().is_success(), "{}", cancelled.status());
        rest
    });
    let (done, total) = (rest["progress"]["done"].as_u64().unwrap(), rest["progress"]["total"].as_u64());
    assert!(done >= status["progress"]["done"].as_u64().unwrap() && total == Some(60), "{rest}");
    stop(child);
}

#[test]
fn token_prints_a_bearer_token_of_the_data_dirs_secret() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    // No secret yet: a token of a new one would be accepted by no server.
    let output = run(&["--data-dir", data_dir, "token"], None);
    assert_eq!(output.status.code(), Some(1));
    assert!(stdout(&output).is_empty());
    let text = stderr(&output);
    assert!(text.contains(&format!("no token secret in the data directory {data_dir}")), "{text}");
    assert!(text.contains("--data-dir <dir> token") && text.contains("`--create`"), "{text}");
    assert!(!dir.path().join("secret").exists(), "nothing was created");

    let output = run(&["--data-dir", data_dir, "token", "--ttl-seconds", "60", "--create"], None);
    assert!(output.status.success(), "{}", stderr(&output));
    let token = stdout(&output).trim().to_owned();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    let secret = std::fs::read_to_string(dir.path().join("secret")).unwrap();
    assert_eq!(secret.len(), 64, "256 random bits, hex");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("secret")).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "only the owner reads the secret");
    }
    let output = run(&["--data-dir", data_dir, "token"], None);
    assert!(output.status.success(), "the secret exists now: {}", stderr(&output));
    assert_ne!(stdout(&output).trim(), token, "each token is new");
}

#[test]
fn the_banners_token_command_is_accepted_by_that_server() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    let (child, banner) = start_serving(&["serve", "--addr", "127.0.0.1:0", "--data-dir", data_dir], &[]);
    let command = banner.split("(bearer token: `").nth(1).and_then(|rest| rest.split('`').next()).unwrap();
    assert_eq!(command, format!("simple_tasks --data-dir {data_dir} token"), "{banner}");
    let url = banner.split("API: ").nth(1).and_then(|rest| rest.split(' ').next()).unwrap().to_owned();
    // Run from elsewhere, as printed, the command signs with this server's secret.
    let args: Vec<&str> = command.split(' ').skip(1).collect();
    let output = run(&args, None);
    assert!(output.status.success(), "{}", stderr(&output));
    let token = stdout(&output).trim().to_owned();
    let status = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
        let response = reqwest::Client::new().get(format!("{url}/tasks")).bearer_auth(&token).send().await.unwrap();
        response.status()
    });
    assert_eq!(status, reqwest::StatusCode::OK);
    stop(child);
}

#[test]
fn duplicate_titles_stop_the_app_naming_both_places() {
    let output = run_binary(env!("CARGO_BIN_EXE_duplicate_titles"), &["list"], None);
    assert_eq!(output.status.code(), Some(1));
    let text = stderr(&output);
    assert!(text.contains("two tasks are titled `twin`"), "{text}");
    assert!(text.matches("duplicate_titles.rs:").count() == 2, "both locations: {text}");
}

#[test]
fn list_json_describes_each_task_as_the_api_does() {
    let output = run(&["list", "--json"], None);
    assert!(output.status.success(), "{}", stderr(&output));
    let mut listed: Vec<Value> = serde_json::from_str(&stdout(&output)).unwrap();
    for task in &mut listed {
        // Where a task is defined is the command line's alone.
        let fields = task.as_object_mut().unwrap();
        for key in ["module_path", "file", "line"] {
            assert!(fields.remove(key).is_some(), "`{key}` missing from {fields:?}");
        }
    }
    let sleep = listed.iter().find(|t| t["title"] == "sleep_for_seconds").unwrap();
    assert_eq!(
        sleep["options"],
        json!({
            "timeout_ms": 60_000, "retries": 0, "retry_delay_ms": 1000, "concurrency": null, "executor": "thread",
            "tags": [], "queue": "default", "image": null, "network": false, "memory_bytes": null, "cpus": null,
            "pids": null, "env": [],
        }),
        "every option of `#[task]`"
    );

    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    let (child, banner) = start_serving(&["serve", "--addr", "127.0.0.1:0", "--data-dir", data_dir], &[]);
    let api = banner.split("API: ").nth(1).and_then(|rest| rest.split(' ').next()).unwrap().to_owned();
    let token = stdout(&run(&["--data-dir", data_dir, "token"], None)).trim().to_owned();
    let served: Value = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
        let response = reqwest::Client::new().get(format!("{api}/functions")).bearer_auth(&token).send().await.unwrap();
        response.json().await.unwrap()
    });
    stop(child);
    assert_eq!(Value::Array(listed), served["items"], "`list --json` and GET /api/v1/functions disagree");
}

#[test]
fn list_json_matches_the_schema_snapshot() {
    let output = run(&["list", "--json"], None);
    assert!(output.status.success());
    let mut tasks: Value = serde_json::from_str(&stdout(&output)).unwrap();
    // Paths differ between machines; the snapshot keeps the file name only.
    for task in tasks.as_array_mut().unwrap() {
        assert!(task["line"].as_u64().unwrap() > 0);
        task["line"] = Value::Null;
    }
    let actual = serde_json::to_string_pretty(&tasks).unwrap() + "\n";
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/snapshots/simple_tasks.json");
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(path, &actual).unwrap();
    }
    let expected = std::fs::read_to_string(path).expect("snapshot missing: run with UPDATE_SNAPSHOTS=1");
    assert_eq!(actual, expected, "schemas changed; review the diff and run with UPDATE_SNAPSHOTS=1");
}
