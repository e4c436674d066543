//! Tasks for the process and Docker executor tests, linked into both the
//! worker binary `executor_app` and the test binary `it` (whose engine and
//! executors look them up by title before starting the worker).

use taskflow::{TaskContext, task};

/// Add two numbers.
#[task(title = "exec.add")]
pub fn add(a: i64, b: i64) -> i64 {
    a + b
}

/// Fail with a message.
#[task(title = "exec.fail")]
pub fn fail(message: String) -> Result<(), String> {
    Err(message)
}

/// Panic.
#[task(title = "exec.panic")]
pub fn panic_now() -> u32 {
    panic!("boom in the worker")
}

/// Log a line with the worker's pid, then sleep.
#[task(title = "exec.sleep")]
pub fn sleep(ctx: &TaskContext, millis: u64) -> u64 {
    ctx.info(format!("pid {}", std::process::id()));
    std::thread::sleep(std::time::Duration::from_millis(millis));
    millis
}

/// Log `n` lines and report progress; print one line too.
#[task(title = "exec.chatty")]
pub fn chatty(ctx: &TaskContext, n: u64) -> u64 {
    for i in 0..n {
        ctx.warn(format!("line {i}"));
        ctx.progress(i + 1, n);
    }
    println!("printed, not a frame");
    n
}

/// Print `mib` MiB to standard output, a KiB a line.
#[task(title = "exec.flood")]
pub fn flood(mib: usize) -> usize {
    let line = "f".repeat(1023);
    for _ in 0..mib * 1024 {
        println!("{line}");
    }
    mib
}

/// Push against the container's walls: spawn threads until refused (a
/// fork bomb's worth of tasks), write past `/tmp`'s size, write to `/` and
/// `/usr`. Reports how far each got.
#[task(title = "exec.walls")]
pub fn walls() -> std::collections::BTreeMap<String, String> {
    let mut report = std::collections::BTreeMap::new();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut threads = Vec::new();
    for _ in 0..10_000 {
        let stop = std::sync::Arc::clone(&stop);
        let spawned = std::thread::Builder::new().stack_size(64 * 1024).spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        });
        match spawned {
            Ok(handle) => threads.push(handle),
            Err(e) => {
                report.insert("threads_refused".to_owned(), e.to_string());
                break;
            }
        }
    }
    report.insert("threads".to_owned(), threads.len().to_string());
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    threads.into_iter().for_each(|t| drop(t.join()));
    let write = |path: &str, bytes: usize| -> String {
        use std::io::Write;
        let chunk = vec![0u8; 1024 * 1024];
        let result = std::fs::File::create(path).and_then(|mut f| {
            let mut left = bytes;
            while left > 0 {
                let n = left.min(chunk.len());
                f.write_all(&chunk[..n])?;
                left -= n;
            }
            f.sync_all()
        });
        let _ = std::fs::remove_file(path);
        match result {
            Ok(()) => "written".to_owned(),
            Err(e) => e.to_string(),
        }
    };
    report.insert("tmp_past_its_size".to_owned(), write("/tmp/fill", 200 * 1024 * 1024));
    report.insert("root".to_owned(), write("/escape", 1));
    // A scratch image may have no `/usr`: making it is a write to `/` too.
    let usr = std::fs::create_dir_all("/usr/taskflow-escape").map_or_else(|e| e.to_string(), |()| "created".to_owned());
    report.insert("usr".to_owned(), usr);
    report
}

/// Abort the process (as `panic = "abort"` would).
#[task(title = "exec.abort")]
pub fn abort() -> u32 {
    eprintln!("about to abort");
    std::process::abort()
}

/// Exit early with `code`, writing no result.
#[task(title = "exec.exit")]
#[allow(clippy::exit)] // leaving without a result frame is the point
pub fn exit(code: i32) -> u32 {
    std::process::exit(code)
}

/// Ask for more memory than there is: the allocation fails and the process
/// aborts.
#[task(title = "exec.alloc_fail")]
pub fn alloc_fail() -> usize {
    let huge: Vec<u8> = Vec::with_capacity(1 << 50);
    huge.capacity()
}

/// Fill `mib` MiB of memory, touching every page (`memory = "32MiB"`).
#[task(title = "exec.hog", memory = "32MiB")]
pub fn hog(mib: usize) -> usize {
    let block = vec![1u8; mib << 20];
    block.iter().map(|b| usize::from(*b)).sum()
}

/// Return a string of `bytes` bytes.
#[task(title = "exec.big")]
pub fn big(bytes: usize) -> String {
    "x".repeat(bytes)
}

/// What the task may do where it runs.
#[derive(Debug, serde::Serialize, serde::Deserialize, schemars::JsonSchema, PartialEq)]
pub struct Probe {
    /// The effective user id.
    pub uid: String,
    /// The network interfaces.
    pub interfaces: Vec<String>,
    /// Whether a file can be created in `/`.
    pub root_writable: bool,
    /// Whether a file can be created in `/tmp`.
    pub tmp_writable: bool,
}

fn probe() -> Probe {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or_default()
        .to_owned();
    let dev = std::fs::read_to_string("/proc/net/dev").unwrap_or_default();
    let mut interfaces: Vec<String> =
        dev.lines().skip(2).filter_map(|l| l.split(':').next()).map(|n| n.trim().to_owned()).collect();
    interfaces.sort();
    let root_writable = std::fs::write("/taskflow-probe", b"x").is_ok();
    let tmp_writable = std::fs::write(format!("/tmp/taskflow-probe-{}", std::process::id()), b"x").is_ok();
    Probe { uid, interfaces, root_writable, tmp_writable }
}

/// Report what a container of the default options may do.
#[task(title = "exec.probe")]
pub fn probe_default() -> Probe {
    probe()
}

/// The same, with a network.
#[task(title = "exec.probe_net", network = true)]
pub fn probe_net() -> Probe {
    probe()
}

/// The declared variable and an undeclared one, as the task sees them.
#[task(title = "exec.env", env = ["CARGO_PKG_NAME"])]
pub fn env() -> (Option<String>, Option<String>) {
    (std::env::var("CARGO_PKG_NAME").ok(), std::env::var("CARGO_MANIFEST_DIR").ok())
}

/// A task on a base image this engine does not have.
#[task(title = "exec.based", image = "taskflow-test/no-such-image:1")]
pub fn based() -> u32 {
    1
}

/// Read the marker file of the local base image `taskflow-it-base:1`, which
/// the base image test builds first.
#[task(title = "exec.on_base", image = "taskflow-it-base:1")]
pub fn on_base() -> String {
    std::fs::read_to_string("/etc/taskflow-base-marker").unwrap_or_else(|e| format!("no marker: {e}"))
}

/// A task on the local base image `taskflow-it-broken-base:1`, whose
/// `ONBUILD` step fails: the image build fails.
#[task(title = "exec.on_broken_base", image = "taskflow-it-broken-base:1")]
pub fn on_broken_base() -> u32 {
    1
}

/// The pid of the process it runs in; its runs go to the process executor
/// unless a submit says otherwise.
#[task(title = "exec.whoami", executor = "process")]
pub fn whoami() -> u32 {
    std::process::id()
}

/// The length of `text`: a large payload's way in.
#[task(title = "exec.len")]
pub fn len(text: String) -> usize {
    text.len()
}

/// Say which run this is and where it runs: the run id and attempt the
/// worker was given, and its host name (a container's is its id's start).
#[task(title = "exec.identity")]
pub fn identity(ctx: &TaskContext) -> serde_json::Value {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    serde_json::json!({"run_id": ctx.run_id(), "attempt": ctx.attempt(), "host": host.trim()})
}
