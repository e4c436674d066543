//! The report: figures over repetitions (median, min–max), the rows of
//! `BENCHMARKS.md` and `bench/results.json`, and the machine they ran on.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::{Value, json};

/// One measured quantity over several repetitions.
#[derive(Debug, Clone)]
pub struct Figure {
    /// Every repetition's value, in the order measured.
    pub samples: Vec<f64>,
}

impl Figure {
    /// A figure from the repetitions' values (at least one).
    pub fn new(samples: Vec<f64>) -> Figure {
        Figure { samples }
    }

    fn sorted(&self) -> Vec<f64> {
        let mut sorted = self.samples.clone();
        sorted.sort_by(f64::total_cmp);
        sorted
    }

    /// The median of the repetitions.
    pub fn median(&self) -> f64 {
        let sorted = self.sorted();
        let n = sorted.len();
        if n == 0 {
            return f64::NAN;
        }
        if n % 2 == 1 { sorted[n / 2] } else { f64::midpoint(sorted[n / 2 - 1], sorted[n / 2]) }
    }

    /// The smallest repetition.
    pub fn min(&self) -> f64 {
        self.sorted().first().copied().unwrap_or(f64::NAN)
    }

    /// The largest repetition.
    pub fn max(&self) -> f64 {
        self.sorted().last().copied().unwrap_or(f64::NAN)
    }

    fn json(&self) -> Value {
        json!({"median": self.median(), "min": self.min(), "max": self.max(), "samples": self.samples})
    }

    fn cell(&self, unit: &str) -> String {
        if self.samples.len() == 1 {
            return format!("{} {unit}", num(self.median()));
        }
        format!("**{}** ({}–{}) {unit}", num(self.median()), num(self.min()), num(self.max()))
    }
}

/// A number with a sensible number of digits.
pub fn num(x: f64) -> String {
    if !x.is_finite() {
        return "n/a".to_owned();
    }
    let a = x.abs();
    if a >= 1000.0 {
        group(x.round())
    } else if a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

fn group(x: f64) -> String {
    let digits = format!("{}", x.abs() as u64);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if x < 0.0 { format!("-{out}") } else { out }
}

/// What a figure should reach.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    /// The median must be at least this.
    AtLeast(f64),
    /// The median must be at most this.
    AtMost(f64),
}

impl Target {
    fn met(self, value: f64) -> bool {
        match self {
            Target::AtLeast(t) => value >= t,
            Target::AtMost(t) => value <= t,
        }
    }

    fn text(self, unit: &str) -> String {
        match self {
            Target::AtLeast(t) => format!("≥ {} {unit}", num(t)),
            Target::AtMost(t) => format!("≤ {} {unit}", num(t)),
        }
    }
}

/// A peer's figure on the same workload.
#[derive(Debug, Clone)]
pub struct Peer {
    /// Its name (`dramatiq`, `celery`, `apalis`).
    pub name: String,
    /// Its figure, or why there is none.
    pub result: Result<Figure, String>,
    /// How many times better than the peer we should be.
    pub min_ratio: Option<f64>,
    /// How it was configured.
    pub config: String,
}

/// One row of the report.
#[derive(Debug, Clone)]
pub struct Row {
    /// The key in `results.json`, e.g. `B1_sqlite_runs_per_s`.
    pub key: String,
    /// What was measured, for people.
    pub label: String,
    /// The unit of the figures.
    pub unit: &'static str,
    /// Our figure, or why there is none.
    pub ours: Result<Figure, String>,
    /// Where our figure should be.
    pub target: Option<Target>,
    /// Peers on the same workload.
    pub peers: Vec<Peer>,
    /// A time, where less is better: a peer's advantage ratio is then the
    /// peer's figure over ours (for a rate, ours over the peer's).
    pub lower_is_better: bool,
}

impl Row {
    /// A row of ours alone.
    pub fn new(
        key: impl Into<String>,
        label: impl Into<String>,
        unit: &'static str,
        ours: Result<Figure, String>,
    ) -> Row {
        Row {
            key: key.into(),
            label: label.into(),
            unit,
            ours,
            target: None,
            peers: Vec::new(),
            lower_is_better: false,
        }
    }

    /// A time, where less is better (the side-by-side ratio is inverted).
    pub fn lower_is_better(mut self) -> Row {
        self.lower_is_better = true;
        self
    }

    /// With a target.
    pub fn target(mut self, target: Target) -> Row {
        self.target = Some(target);
        self
    }

    fn verdict(&self) -> String {
        match (&self.ours, self.target) {
            (Ok(fig), Some(t)) => (if t.met(fig.median()) { "met" } else { "**missed**" }).to_owned(),
            (Err(_), Some(_)) => "not measured".to_owned(),
            (_, None) => String::new(),
        }
    }
}

/// Where and when the benchmark ran.
#[derive(Debug, Clone)]
pub struct Machine {
    /// CPU model and logical cores.
    pub cpu: String,
    /// Total memory.
    pub memory: String,
    /// Kernel release.
    pub kernel: String,
    /// When the run started (UTC).
    pub date: String,
    /// The commit measured.
    pub commit: String,
    /// `/proc/loadavg` at the start.
    pub load_start: String,
    /// `/proc/loadavg` at the end.
    pub load_end: String,
}

impl Machine {
    /// Reads the machine's description now (`load_end` is filled later).
    pub fn describe(repo: &Path) -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .map_or_else(|| "unknown CPU".to_owned(), |m| m.trim().to_owned());
        let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory = meminfo
            .lines()
            .find(|l| l.starts_with("MemTotal"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or_else(|| "unknown".to_owned(), |kb| format!("{:.1} GiB", kb / 1024.0 / 1024.0));
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_owned();
        let date = command_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);
        let mut commit = command_output("git", &["-C", &repo.display().to_string(), "rev-parse", "--short", "HEAD"]);
        let dirty = command_output(
            "git",
            &["-C", &repo.display().to_string(), "status", "--porcelain", "--untracked-files=no"],
        );
        if !dirty.is_empty() {
            commit.push_str(" (with uncommitted changes)");
        }
        Machine {
            cpu: format!("{cores} × {model}"),
            memory,
            kernel,
            date,
            commit,
            load_start: load_average(),
            load_end: String::new(),
        }
    }
}

/// The first three fields of `/proc/loadavg`.
pub fn load_average() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

fn command_output(program: &str, args: &[&str]) -> String {
    std::process::Command::new(program)
        .args(args)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// `results.json`: `{"<key>": {"taskflow": {median, min, max, samples}, "<peer>": …}, …}`.
pub fn results_json(machine: &Machine, mode: &str, rows: &[Row]) -> Value {
    let mut out = serde_json::Map::new();
    out.insert(
        "_meta".to_owned(),
        json!({
            "mode": mode, "date": machine.date, "commit": machine.commit, "cpu": machine.cpu,
            "memory": machine.memory, "kernel": machine.kernel,
            "load_average_start": machine.load_start, "load_average_end": machine.load_end,
        }),
    );
    for row in rows {
        let mut entry = serde_json::Map::new();
        entry.insert("unit".to_owned(), json!(row.unit));
        entry.insert("taskflow".to_owned(), row.ours.as_ref().map_or_else(|why| json!({"missing": why}), Figure::json));
        for peer in &row.peers {
            let value = peer.result.as_ref().map_or_else(|why| json!({"missing": why}), Figure::json);
            entry.insert(peer.name.clone(), value);
        }
        out.insert(row.key.clone(), Value::Object(entry));
    }
    Value::Object(out)
}

/// The figures of `BENCHMARKS.md` (the prose around them is the caller's).
pub fn markdown_tables(rows: &[Row]) -> String {
    let mut md = String::new();
    md.push_str(
        "| key | workload | TaskFlow: median (min–max) | target | verdict |\n| --- | --- | --- | --- | --- |\n",
    );
    for row in rows {
        let ours = match &row.ours {
            Ok(fig) => fig.cell(row.unit),
            Err(why) => format!("— ({why})"),
        };
        let target = row.target.map(|t| t.text(row.unit)).unwrap_or_default();
        let _ = writeln!(md, "| `{}` | {} | {ours} | {target} | {} |", row.key, row.label, row.verdict());
    }
    let peered: Vec<&Row> = rows.iter().filter(|r| !r.peers.is_empty()).collect();
    if !peered.is_empty() {
        md.push_str(
            "\n### Side by side\n\nHow many times better TaskFlow is: its rate over the peer's, or the peer's time over its own (above \
             1× TaskFlow is ahead).\n\n| workload | peer | peer: median (min–max) | times better (median; min–max) | target | verdict |\n\
             | --- | --- | --- | --- | --- | --- |\n",
        );
        for row in peered {
            for peer in &row.peers {
                let (theirs, ratio, verdict) = match (&row.ours, &peer.result) {
                    (Ok(ours), Ok(theirs)) => {
                        // How many times better TaskFlow is: a rate over the
                        // peer's, or the peer's time over ours.
                        let (better, worse) = if row.lower_is_better { (theirs, ours) } else { (ours, theirs) };
                        let r = better.median() / worse.median();
                        let lo = better.min() / worse.max();
                        let hi = better.max() / worse.min();
                        let verdict = peer
                            .min_ratio
                            .map_or(String::new(), |t| (if r >= t { "met" } else { "**missed**" }).to_owned());
                        (theirs.cell(row.unit), format!("**{}×** ({}–{}×)", num(r), num(lo), num(hi)), verdict)
                    }
                    (_, Err(why)) => (format!("— ({why})"), String::new(), "not measured".to_owned()),
                    (Err(_), Ok(theirs)) => (theirs.cell(row.unit), String::new(), "not measured".to_owned()),
                };
                let target = peer.min_ratio.map(|t| format!("≥ {}×", num(t))).unwrap_or_default();
                let _ = writeln!(md, "| {} | {} | {theirs} | {ratio} | {target} | {verdict} |", row.label, peer.name);
            }
        }
    }
    md
}

/// HDR histogram of microseconds, 1 µs to an hour, 3 significant digits.
pub fn histogram() -> hdrhistogram::Histogram<u64> {
    hdrhistogram::Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

/// p50, p99 and max of a histogram of microseconds, in milliseconds.
pub fn quantiles_ms(h: &hdrhistogram::Histogram<u64>) -> (f64, f64, f64) {
    let ms = |us: u64| us as f64 / 1000.0;
    (ms(h.value_at_quantile(0.5)), ms(h.value_at_quantile(0.99)), ms(h.max()))
}

/// The top of `BENCHMARKS.md`: how to reproduce, the machine, the method.
pub fn header(mode: &str, machine: &Machine, repeat: usize, latency_repeat: usize) -> String {
    let mut md = String::new();
    md.push_str("# Benchmarks\n\n");
    md.push_str(
        "Written by `cargo run --release -p taskflow-bench -- all` (this file and `bench/results.json`; \
         `--quick` for a pass of a minute or two). Every figure below was measured by that command on the machine \
         described here; nothing is copied from elsewhere.\n\n",
    );
    if mode != "full" {
        let _ = writeln!(
            md,
            "> **This is a `--{mode}` pass**: small counts, fewer repetitions. Run without `--{mode}` for the real figures.\n"
        );
    }
    let _ = writeln!(md, "| | |\n| --- | --- |");
    let _ = writeln!(md, "| date | {} |", machine.date);
    let _ = writeln!(md, "| commit | `{}` |", machine.commit);
    let _ = writeln!(md, "| CPU | {} |", machine.cpu);
    let _ = writeln!(md, "| memory | {} |", machine.memory);
    let _ = writeln!(md, "| kernel | {} |", machine.kernel);
    let _ = writeln!(md, "| load average (1, 5, 15 min) at start | {} |", machine.load_start);
    let _ = writeln!(md, "| load average at end | {} |", machine.load_end);
    let _ = writeln!(md, "| repetitions | B1, B4: {repeat}; B2, B3, B5: {latency_repeat} |\n");
    md.push_str(
        "Figures are the **median** of the repetitions, with the min–max range in brackets. The load \
         generators, the peers' brokers and the servers all share the machine's cores.\n\n## Results\n\n",
    );
    md
}
