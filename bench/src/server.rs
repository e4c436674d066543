//! A `serve` of this binary (`taskflow-bench app serve`) in a child process,
//! with its bearer token and its resident memory.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Where a `serve` listens, and a token for it.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// A bearer token from `app token`.
    pub token: String,
}

/// A running `serve`; killed when dropped.
#[derive(Debug)]
pub struct Server {
    child: Child,
    /// Where it listens.
    pub endpoint: Endpoint,
    /// Its data directory.
    pub data_dir: PathBuf,
}

fn app(data_dir: &Path) -> Result<Command> {
    let exe = std::env::current_exe().context("finding this binary")?;
    let mut command = Command::new(exe);
    command.arg("app").arg("--data-dir").arg(data_dir).kill_on_drop(true);
    Ok(command)
}

impl Server {
    /// Starts `serve` on a free port over the SQLite store in `data_dir`.
    pub async fn start(data_dir: &Path) -> Result<Server> {
        let out = app(data_dir)?
            .args(["token", "--create"])
            .stderr(Stdio::inherit())
            .output()
            .await
            .context("running `app token`")?;
        if !out.status.success() {
            bail!("`app token` failed: {}", out.status);
        }
        let token = String::from_utf8(out.stdout)?.trim().to_owned();
        let mut child = app(data_dir)?
            .args(["serve", "--addr", "127.0.0.1:0", "--retention-days", "0", "--grace", "1"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting `app serve`")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let url = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = lines.next_line().await? {
                if let Some(at) = line.find("http://") {
                    let rest = &line[at..];
                    let end = rest[7..].find(['/', ' ']).map_or(rest.len(), |i| i + 7);
                    return Ok::<_, anyhow::Error>(rest[..end].trim_end_matches(['.', ',']).to_owned());
                }
            }
            bail!("`serve` ended before printing its address")
        })
        .await
        .context("waiting for `serve` to print its address")??;
        // Keep reading (and dropping) what it prints, so it never blocks.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Server { child, endpoint: Endpoint { url, token }, data_dir: data_dir.to_path_buf() })
    }

    /// The process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// CPU time the server has used so far, in seconds.
    pub fn cpu_seconds(&self) -> f64 {
        self.pid().map_or(f64::NAN, |pid| cpu_seconds(&pid.to_string()))
    }

    /// Resident memory (`VmRSS`) now, in MiB.
    pub fn rss_mib(&self) -> Result<f64> {
        let pid = self.pid().context("the server has exited")?;
        rss_mib(pid)
    }

    /// Kills the server and waits for it.
    pub async fn stop(mut self) -> Result<()> {
        self.child.kill().await.context("stopping `serve`")?;
        Ok(())
    }
}

/// CPU time (user + system) a process has used, in seconds (10 ms ticks).
pub fn cpu_seconds(pid: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            // utime and stime: fields 14 and 15 of stat(5), 12 and 13 after the name.
            Some((fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?) / 100.0)
        })
        .unwrap_or(f64::NAN)
}

/// `VmRSS` of a process, in MiB.
pub fn rss_mib(pid: u32) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).context("reading /proc/<pid>/status")?;
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .context("no VmRSS line")?
        .parse()?;
    Ok(kb / 1024.0)
}
