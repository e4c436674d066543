//! A control-plane app for the delivery tests: a task with an effect log
//! that ignores cancellation (so a stop must hand it back), and a poison
//! task that always panics.
//!
//! `effect` appends `start <id> <attempt>` and `done <id> <attempt>` to
//! `effects.log` in `$TASKFLOW_DATA_DIR`, so a test can count executions;
//! `churn`, the soak's load, does the same in `churn.log`.

use std::io::Write;
use std::time::Duration;

use taskflow::{TaskContext, task};

fn effect_line(line: &str) {
    append_line("effects.log", line).sync_all().unwrap();
}

fn append_line(name: &str, line: &str) -> std::fs::File {
    let dir = std::env::var("TASKFLOW_DATA_DIR").expect("TASKFLOW_DATA_DIR is set");
    let path = std::path::Path::new(&dir).join(name);
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
    // One write per line, so concurrent runs never interleave half lines.
    file.write_all(format!("{line}\n").as_bytes()).unwrap();
    file
}

/// Work for `millis`, deaf to cancellation, logging `start`/`done <run> <attempt> <pid>`
#[task(retries = 2)]
fn effect(ctx: &TaskContext, n: u32, millis: u64) -> u32 {
    effect_line(&format!("start {} {} {}", ctx.run_id(), ctx.attempt(), std::process::id()));
    std::thread::sleep(Duration::from_millis(millis.min(120_000)));
    effect_line(&format!("done {} {} {}", ctx.run_id(), ctx.attempt(), std::process::id()));
    n
}

/// Work for `millis`, failing the first `fail` attempts, logging `start`/`done <run> <attempt>`
///
/// Unsynced: a killed process's writes survive in the page cache.
#[task(retries = 5, retry_delay = "100ms")]
fn churn(ctx: &TaskContext, n: u64, millis: u64, fail: u32) -> Result<u64, String> {
    append_line("churn.log", &format!("start {} {}", ctx.run_id(), ctx.attempt()));
    std::thread::sleep(Duration::from_millis(millis.min(60_000)));
    if ctx.attempt() <= fail {
        return Err(format!("failing attempt {} of {fail} on purpose", ctx.attempt()));
    }
    append_line("churn.log", &format!("done {} {}", ctx.run_id(), ctx.attempt()));
    Ok(n)
}

/// Wait `millis`, touching nothing (runs in a container as well)
#[task(retries = 2)]
fn wait_long(millis: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(millis.min(600_000)));
    millis
}

/// Return `n`, on a worker that takes the `gpu` queue
#[task(queue = "gpu")]
fn on_gpu(n: u32) -> u32 {
    n
}

/// Log `lines` lines of 100 bytes, then return a text of `bytes` bytes
#[task]
fn bulky(ctx: &TaskContext, bytes: u64, lines: u32) -> String {
    for i in 0..lines {
        ctx.info(format!("{i:05} {}", "y".repeat(94)));
    }
    "x".repeat(bytes.min(10_000_000) as usize)
}

/// Return 1 from a container (so the server warns at start when Docker is unreachable)
#[task(executor = "docker")]
fn in_a_container() -> u32 {
    1
}

/// Panic, every time
#[task(retries = 2, retry_delay = "100ms")]
fn always_panics() -> u32 {
    panic!("poisoned on purpose")
}

fn main() -> taskflow::Result<()> {
    taskflow::App::from_env().run()
}
