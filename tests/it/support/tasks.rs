//! Tasks defined by the test binary itself, in nested modules, covering the
//! argument and return shapes `#[task]` accepts.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use taskflow::{TaskContext, task};

/// A point on a plane.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
pub struct Point {
    /// Horizontal
    pub x: i32,
    /// Vertical
    pub y: i32,
}

/// A colour by name.
#[derive(Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Colour {
    /// Warm
    Red,
    /// Cool
    Blue,
}

/// Every kind of argument
///
/// More text that is not the summary.
///
/// # Arguments
/// * `count` - how many
/// * `ratio` - a fraction
/// * `label` - a name
/// * `point` - where
#[allow(clippy::too_many_arguments)] // every argument shape in one task
#[task(title = "tests.kitchen_sink", tags = ["test", "shapes"], retries = 3, timeout = "1h30m", defaults(label = "none", flag = false))]
pub fn kitchen_sink(
    count: u8,
    ratio: f64,
    flag: bool,
    label: String,
    maybe: Option<i64>,
    list: Vec<Point>,
    map: HashMap<String, u32>,
    colour: Colour,
    point: Point,
) -> Result<String, String> {
    Ok(format!(
        "{count} {ratio} {flag} {label} {maybe:?} {} {} {colour:?} {},{}",
        list.len(),
        map.len(),
        point.x,
        point.y
    ))
}

/// Returns what it was given, through the context's logger.
#[task(title = "tests.echo_logged")]
pub fn echo_logged(ctx: &TaskContext, text: String) -> String {
    ctx.info(format!("echo {text}"));
    ctx.progress(1, 1);
    text
}

/// Panics with a message.
#[task(title = "tests.panics")]
pub fn panics(message: String) -> u8 {
    panic!("{message}")
}

/// Fails with an error.
#[task(title = "tests.fails")]
pub fn fails() -> Result<(), std::io::Error> {
    Err(std::io::Error::other("disk on fire"))
}

/// Returns nothing.
#[task(title = "tests.unit")]
pub fn unit() {}

pub mod nested {
    pub mod deeper {
        /// An async task in a nested module.
        #[taskflow::task(title = "tests.async_double")]
        pub async fn async_double(n: i64) -> i64 {
            tokio::task::yield_now().await;
            n * 2
        }

        /// An async task that panics.
        #[taskflow::task(title = "tests.async_panics")]
        pub async fn async_panics() -> i64 {
            tokio::task::yield_now().await;
            panic!("async boom")
        }
    }
}

/// Spins until cancelled, checking the context; for timeout and cancel tests.
#[task(title = "tests.spin_until_cancelled")]
pub fn spin_until_cancelled(ctx: &TaskContext) -> Result<u64, taskflow::Cancelled> {
    let mut spins = 0;
    loop {
        ctx.check_cancelled()?;
        spins += 1;
        std::thread::sleep(Duration::from_millis(5));
        if spins > 200_000 {
            return Ok(spins);
        }
    }
}

/// Sleeps asynchronously for a long time; for timeout tests.
#[task(title = "tests.async_sleep", timeout = "50ms")]
pub async fn async_sleep() -> u8 {
    tokio::time::sleep(Duration::from_secs(3600)).await;
    0
}

/// How many `tests.gate` runs are inside the gate now, and the most ever.
pub static INSIDE: AtomicUsize = AtomicUsize::new(0);
pub static MOST_INSIDE: AtomicUsize = AtomicUsize::new(0);

/// Enters a gate, stays a moment, leaves; records how many were inside at once.
#[task(title = "tests.gate")]
pub fn gate() -> usize {
    let now = INSIDE.fetch_add(1, Ordering::SeqCst) + 1;
    MOST_INSIDE.fetch_max(now, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(20));
    INSIDE.fetch_sub(1, Ordering::SeqCst);
    now
}

/// How many times each `tests.flaky` key has been attempted.
static FLAKY_ATTEMPTS: std::sync::Mutex<Option<HashMap<String, u32>>> = std::sync::Mutex::new(None);

/// Fails its first `failures` attempts for `key`, then returns the attempt.
#[task(title = "tests.flaky", retries = 5)]
pub fn flaky(ctx: &TaskContext, key: String, failures: u32) -> Result<u32, String> {
    let mut map = FLAKY_ATTEMPTS.lock().unwrap();
    let count = map.get_or_insert_with(HashMap::new).entry(key).or_insert(0);
    *count += 1;
    ctx.info(format!("attempt {} (context says {})", count, ctx.attempt()));
    if *count <= failures { Err(format!("failure {count}")) } else { Ok(*count) }
}

/// Per group: how many `tests.limited` runs are inside now, and the most ever.
static LIMITED: std::sync::Mutex<Option<HashMap<String, (usize, usize)>>> = std::sync::Mutex::new(None);

/// The most `tests.limited` runs of `group` that were inside at once.
pub fn most_inside_limited(group: &str) -> usize {
    LIMITED.lock().unwrap().as_ref().and_then(|map| map.get(group)).map_or(0, |(_, most)| *most)
}

/// One at a time per store, whatever the engine's free slots.
#[task(title = "tests.limited", concurrency = 1, retry_delay = "10ms")]
pub fn limited(n: u32, group: String) -> u32 {
    {
        let mut map = LIMITED.lock().unwrap();
        let (inside, most) = map.get_or_insert_with(HashMap::new).entry(group.clone()).or_insert((0, 0));
        *inside += 1;
        *most = (*most).max(*inside);
    }
    std::thread::sleep(Duration::from_millis(30));
    LIMITED.lock().unwrap().as_mut().unwrap().get_mut(&group).unwrap().0 -= 1;
    n
}

/// An argument type that can be read but not written.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct OnlyIn {
    /// A number
    pub x: i32,
}

/// A result type that can be written but not read.
#[derive(Debug, Serialize, JsonSchema)]
pub struct OnlyOut {
    /// A number
    pub y: i32,
}

/// Takes a type without `Serialize`.
#[task(title = "tests.only_in")]
pub fn only_in(value: OnlyIn) -> i32 {
    value.x
}

/// Returns a type without `Deserialize`.
#[task(title = "tests.only_out")]
pub fn only_out(y: i32) -> OnlyOut {
    OnlyOut { y }
}

/// Sleeps `ms` milliseconds on its thread, deaf to cancellation; outlives a
/// short lease unless the heartbeat renews it.
#[task(title = "tests.sleep_ms")]
pub fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// Per group: how many `tests.overlap` runs are inside now, and the most ever.
static OVERLAP: std::sync::Mutex<Option<HashMap<String, (usize, usize)>>> = std::sync::Mutex::new(None);

/// The most `tests.overlap` runs of `group` that were inside at once.
pub fn most_inside_overlap(group: &str) -> usize {
    OVERLAP.lock().unwrap().as_ref().and_then(|map| map.get(group)).map_or(0, |(_, most)| *most)
}

/// Stays inside a while; records how many runs of its group were inside at
/// once. No limit of its own: only the engine's slots bound it.
#[task(title = "tests.overlap")]
pub fn overlap(n: u32, group: String) -> u32 {
    {
        let mut map = OVERLAP.lock().unwrap();
        let (inside, most) = map.get_or_insert_with(HashMap::new).entry(group.clone()).or_insert((0, 0));
        *inside += 1;
        *most = (*most).max(*inside);
    }
    std::thread::sleep(Duration::from_millis(100));
    OVERLAP.lock().unwrap().as_mut().unwrap().get_mut(&group).unwrap().0 -= 1;
    n
}

/// Per group: the labels of `tests.record_start` runs, in the order they
/// started.
static STARTS: std::sync::Mutex<Option<HashMap<String, Vec<String>>>> = std::sync::Mutex::new(None);

/// The labels of `group`'s `tests.record_start` runs in start order.
pub fn start_order(group: &str) -> Vec<String> {
    STARTS.lock().unwrap().as_ref().and_then(|map| map.get(group)).cloned().unwrap_or_default()
}

/// Records that it started, under its group.
#[task(title = "tests.record_start")]
pub fn record_start(group: String, label: String) -> String {
    STARTS.lock().unwrap().get_or_insert_with(HashMap::new).entry(group).or_default().push(label.clone());
    label
}

/// The keys `tests.spin_until_released` runs may finish on.
static RELEASED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Lets the `tests.spin_until_released` runs of `key` finish.
pub fn release(key: &str) {
    RELEASED.lock().unwrap().push(key.to_owned());
}

/// Spins, checking the context, until cancelled or its key is released.
#[task(title = "tests.spin_until_released")]
pub fn spin_until_released(ctx: &TaskContext, key: String) -> Result<String, taskflow::Cancelled> {
    loop {
        ctx.check_cancelled()?;
        if RELEASED.lock().unwrap().contains(&key) {
            return Ok(key);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
