//! Crash safety with real processes: an app embedding the engine is killed
//! with SIGKILL mid-run and started again; every run reaches exactly one
//! final state, none is lost, none completes twice.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const APP: &str = env!("CARGO_BIN_EXE_engine_app");

fn effects(dir: &std::path::Path) -> Vec<(String, String, u32)> {
    let text = std::fs::read_to_string(dir.join("effects.log")).unwrap_or_default();
    // A line still being written at the kill has no newline yet: skip it.
    let complete = match text.rfind('\n') {
        Some(end) => &text[..=end],
        None => "",
    };
    complete
        .lines()
        .map(|line| {
            let parts: Vec<&str> = line.split(' ').collect();
            (parts[0].to_owned(), parts[1].to_owned(), parts[2].parse().unwrap())
        })
        .collect()
}

#[test]
fn killed_mid_run_then_restarted_loses_nothing_and_completes_each_run_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut app = Command::new(APP)
        .args(["submit", "10"])
        .env("TASKFLOW_DATA_DIR", dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(app.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "submitted", "every submit was acknowledged");

    // Kill while the first runs are executing and none has finished.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !effects(dir.path()).iter().any(|(what, _, _)| what == "start") {
        assert!(Instant::now() < deadline, "no run started");
        std::thread::sleep(Duration::from_millis(10));
    }
    app.kill().unwrap(); // SIGKILL
    app.wait().unwrap();
    let before = effects(dir.path());
    let interrupted: HashSet<String> =
        before.iter().filter(|(w, _, _)| w == "start").map(|(_, id, _)| id.clone()).collect();
    let finished_before: HashSet<String> =
        before.iter().filter(|(w, _, _)| w == "done").map(|(_, id, _)| id.clone()).collect();
    assert!(!interrupted.is_empty());

    let output = Command::new(APP).arg("drain").env("TASKFLOW_DATA_DIR", dir.path()).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let runs: Vec<Value> =
        String::from_utf8_lossy(&output.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(runs.len(), 10, "no run was lost");

    let after = effects(dir.path());
    let mut done: HashMap<String, u32> = HashMap::new();
    for (what, id, _) in &after {
        if what == "done" {
            *done.entry(id.clone()).or_default() += 1;
        }
    }
    for run in &runs {
        let id = run["id"].as_str().unwrap();
        assert_eq!(run["status"], "completed", "{run}");
        assert_eq!(done.get(id), Some(&1), "run {id} completed exactly once: {after:?}");
        let attempt = run["attempt"].as_u64().unwrap();
        if interrupted.contains(id) && !finished_before.contains(id) {
            assert_eq!(attempt, 2, "run {id} was interrupted, so its second attempt finished: {after:?}");
        } else {
            // Claimed but not yet started at the kill, it is on attempt 2 too.
            assert!(attempt <= 2, "run {id}: {after:?}");
        }
    }
}
