//! A control-plane app for the delivery tests: a task with an effect log
//! that ignores cancellation (so a stop must hand it back), and a poison
//! task that always panics.
//!
//! `effect` appends `start <id> <attempt>` and `done <id> <attempt>` to
//! `effects.log` in `$TASKFLOW_DATA_DIR`, so a test can count executions.

use std::io::Write;
use std::time::Duration;

use taskflow::{TaskContext, task};

fn effect_line(line: &str) {
    let dir = std::env::var("TASKFLOW_DATA_DIR").expect("TASKFLOW_DATA_DIR is set");
    let path = std::path::Path::new(&dir).join("effects.log");
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
    // One write per line, so concurrent runs never interleave half lines.
    file.write_all(format!("{line}\n").as_bytes()).unwrap();
    file.sync_all().unwrap();
}

/// Work for `millis`, deaf to cancellation, logging `start`/`done <run> <attempt> <pid>`
#[task(retries = 2)]
fn effect(ctx: &TaskContext, n: u32, millis: u64) -> u32 {
    effect_line(&format!("start {} {} {}", ctx.run_id(), ctx.attempt(), std::process::id()));
    std::thread::sleep(Duration::from_millis(millis.min(120_000)));
    effect_line(&format!("done {} {} {}", ctx.run_id(), ctx.attempt(), std::process::id()));
    n
}

/// Wait `millis`, touching nothing (runs in a container as well)
#[task(retries = 2)]
fn wait_long(millis: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(millis.min(600_000)));
    millis
}

/// Panic, every time
#[task(retries = 2, retry_delay = "100ms")]
fn always_panics() -> u32 {
    panic!("poisoned on purpose")
}

fn main() -> taskflow::Result<()> {
    taskflow::App::from_env().run()
}
