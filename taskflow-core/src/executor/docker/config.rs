//! The settings of a Docker executor: plain data, in every build, so an
//! engine's configuration has the same fields with the feature on or off.

use std::path::PathBuf;
use std::time::Duration;

/// Settings of the Docker executor (`DockerExecutor`, feature `docker`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DockerExecutorConfig {
    /// The engine's address: `unix:///path/docker.sock` or `tcp://host:2375`.
    /// `None`: `DOCKER_HOST`, else `unix:///var/run/docker.sock`.
    pub host: Option<String>,
    /// The binary put into images; `None` is this binary.
    pub program: Option<PathBuf>,
    /// The app's name in image names and labels; `None` is the binary's
    /// file name.
    pub app: Option<String>,
    /// More labels for every image and container (tests mark theirs).
    pub labels: Vec<(String, String)>,
    /// The memory limit of tasks without a `memory` option, in bytes
    /// (default 512 MiB).
    pub default_memory_bytes: u64,
    /// The CPU limit of tasks without a `cpus` option, in billionths of a CPU
    /// (default 1 CPU).
    pub default_nano_cpus: u64,
    /// The process limit of tasks without a `pids` option (default 128).
    pub default_pids: u32,
    /// The size of each container's `/tmp` tmpfs, in bytes (default 64 MiB).
    pub tmp_bytes: u64,
    /// The largest result frame accepted, in bytes (default 16 MiB).
    pub max_result_bytes: usize,
    /// How many containers each Docker task keeps started ahead, waiting for
    /// a run (default 0: every run creates its container).
    pub warm_containers: usize,
    /// How long a warm container may wait for a run before it is removed
    /// (default 5 minutes).
    pub warm_idle: Duration,
}

impl Default for DockerExecutorConfig {
    fn default() -> Self {
        DockerExecutorConfig {
            host: None,
            program: None,
            app: None,
            labels: Vec::new(),
            default_memory_bytes: 512 * 1024 * 1024,
            default_nano_cpus: 1_000_000_000,
            default_pids: 128,
            tmp_bytes: 64 * 1024 * 1024,
            max_result_bytes: 16 * 1024 * 1024,
            warm_containers: 0,
            warm_idle: Duration::from_secs(300),
        }
    }
}
