//! One run's container: created hardened, attached, driven to its outcome
//! (input written, output streamed into the run, the deadline and a cancel
//! watched) and removed in every case.

use std::collections::HashMap;
use std::time::Duration;

use bollard::Docker;
use bollard::container::{
    AttachContainerOptions, Config, KillContainerOptions, LogOutput, RemoveContainerOptions, StartContainerOptions,
    WaitContainerOptions,
};
use bollard::models::{ContainerWaitResponse, HostConfig};
use futures_util::{Stream, StreamExt};
use tokio::task::JoinHandle;

use super::contents::{self};
use super::executor::DockerExecutor;
use super::images::WorkerImage;
use crate::error::TaskError;
use crate::executor::Error;
use crate::executor::frame;
use crate::executor::worker_io::{self, DriveOptions, LogLines, Output, Worker};
use crate::task::context::TaskContext;
use crate::task::registry::{TaskDef, TaskResult};

/// How long output is still read after the container ended: a hang guard.
pub(super) const DRAIN_GRACE: Duration = Duration::from_secs(10);

impl DockerExecutor {
    pub(super) async fn create_container(
        &self,
        docker: &Docker,
        def: &'static TaskDef,
        ctx: Option<&TaskContext>,
        image: &WorkerImage,
    ) -> Result<ContainerGuard, Error> {
        let config = &self.inner.config;
        let options = def.options().container;
        let memory = options.memory_bytes.unwrap_or(config.default_memory_bytes);
        let memory = i64::try_from(memory).unwrap_or(i64::MAX);
        // A warm container learns its run from the envelope on its stdin.
        let mut env = match ctx {
            Some(ctx) => {
                vec![format!("TASKFLOW_RUN_ID={}", ctx.run_id()), format!("TASKFLOW_ATTEMPT={}", ctx.attempt())]
            }
            None => vec![format!("{}=1", frame::ENVELOPE_ENV)],
        };
        for name in options.env {
            if let Ok(value) = std::env::var(name) {
                env.push(format!("{name}={value}"));
            }
        }
        let mut labels: HashMap<String, String> = config.labels.iter().cloned().collect();
        labels.insert("taskflow.app".to_owned(), self.app()?);
        labels.insert("taskflow.task".to_owned(), def.title().to_owned());
        match ctx {
            Some(ctx) => {
                labels.insert("taskflow.run".to_owned(), ctx.run_id().to_owned());
                labels.insert("taskflow.attempt".to_owned(), ctx.attempt().to_string());
            }
            None => {
                labels.insert("taskflow.warm".to_owned(), "true".to_owned());
            }
        }
        labels.insert("taskflow.owner".to_owned(), self.inner.owner.clone());
        let host_config = HostConfig {
            network_mode: Some(if options.network { "bridge" } else { "none" }.to_owned()),
            readonly_rootfs: Some(true),
            tmpfs: Some(HashMap::from([(
                "/tmp".to_owned(),
                format!("rw,nosuid,nodev,size={},mode=1777", config.tmp_bytes),
            )])),
            cap_drop: Some(vec!["ALL".to_owned()]),
            security_opt: Some(vec!["no-new-privileges".to_owned()]),
            privileged: Some(false),
            memory: Some(memory),
            memory_swap: Some(memory),
            nano_cpus: Some(i64::try_from(options.nano_cpus.unwrap_or(config.default_nano_cpus)).unwrap_or(i64::MAX)),
            pids_limit: Some(i64::from(options.pids.unwrap_or(config.default_pids))),
            ..Default::default()
        };
        let container_config = Config {
            image: Some(image.tag.clone()),
            user: Some(contents::USER.to_owned()),
            env: Some(env),
            labels: Some(labels),
            attach_stdin: Some(true),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            open_stdin: Some(true),
            stdin_once: Some(true),
            tty: Some(false),
            network_disabled: Some(!options.network),
            host_config: Some(host_config),
            ..Default::default()
        };
        let created = docker
            .create_container::<String, String>(None, container_config)
            .await
            .map_err(|e| Error::Docker { doing: "creating the container".to_owned(), message: e.to_string() })?;
        Ok(ContainerGuard { docker: docker.clone(), id: created.id, armed: true, memory: memory as u64 })
    }

    /// Writes `body` (an [`frame::Envelope`] when `enveloped`) to the
    /// attached, started `container`, streams its output into the run and
    /// waits for its end: the run's outcome.
    pub(super) async fn drive(
        &self,
        docker: &Docker,
        container: &ContainerGuard,
        attached: bollard::container::AttachContainerResults,
        ctx: &TaskContext,
        (body, enveloped): (Vec<u8>, bool),
        timeout: Option<Duration>,
    ) -> TaskResult {
        let unbounded = unbounded(docker);
        let cap = self.inner.config.max_result_bytes;
        let log_ctx = ctx.clone();
        let mut output = attached.output;
        let reader = tokio::spawn(async move {
            let mut stdout = Vec::new();
            let mut log = LogLines::new(log_ctx, enveloped);
            let mut too_large = false;
            while let Some(item) = output.next().await {
                match item {
                    Ok(LogOutput::StdOut { message }) => {
                        if stdout.len() + message.len() > cap {
                            too_large = true;
                            break;
                        }
                        stdout.extend_from_slice(&message);
                    }
                    Ok(LogOutput::StdErr { message } | LogOutput::Console { message }) => log.push(&message),
                    Ok(LogOutput::StdIn { .. }) => {}
                    Err(_) => break,
                }
                // A worker given an envelope says when its output is
                // complete: the frame, then the end line after every log
                // line. No need to wait for the engine to close the stream.
                if log.ended() && stdout.contains(&b'\n') {
                    break;
                }
            }
            let last = log.finish();
            (if too_large { None } else { Some(stdout) }, last)
        });
        let mut worker = Running {
            docker,
            container,
            wait: unbounded.wait_container(&container.id, None::<WaitContainerOptions<String>>),
        };
        let output = Attached { reader, joined: None };
        // Closing our half of the connection closes the container's stdin
        // (`stdin_once`).
        let options = DriveOptions { timeout, max_result_bytes: cap, wait_for_exit: false };
        worker_io::drive(&mut worker, Some(attached.input), body, output, ctx, options).await
    }
}

/// A started container as its run's worker.
struct Running<'a, S> {
    docker: &'a Docker,
    container: &'a ContainerGuard,
    /// The engine's wait for the container's end.
    wait: S,
}

impl<S> Worker for Running<'_, S>
where
    S: Stream<Item = Result<ContainerWaitResponse, bollard::errors::Error>> + Unpin + Send,
{
    type Exit = i64;
    type WaitError = Error;

    async fn wait(&mut self) -> Result<i64, Error> {
        let failed = |message: String| Error::Docker { doing: "waiting for the container".to_owned(), message };
        match self.wait.next().await {
            Some(Ok(response)) => Ok(response.status_code),
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Ok(code),
            Some(Err(error)) => Err(failed(error.to_string())),
            None => Err(failed("the engine ended the wait without a status".to_owned())),
        }
    }

    async fn stop(&mut self, exited: bool) {
        if !exited {
            let options = KillContainerOptions { signal: "SIGKILL".to_owned() };
            let _ = self.docker.kill_container(&self.container.id, Some(options)).await;
        }
    }

    /// Nothing to wait for: the run removes the container, killed or not.
    async fn reap(&mut self) {}

    fn wait_failed(&self, error: Error, _last_output: Option<String>) -> TaskError {
        error.into()
    }

    async fn crashed(&mut self, code: i64, last_output: Option<String>) -> TaskError {
        let memory = self.container.memory;
        let oom_killed = self
            .docker
            .inspect_container(&self.container.id, None)
            .await
            .ok()
            .and_then(|c| c.state)
            .and_then(|s| s.oom_killed)
            .unwrap_or(false);
        if oom_killed {
            return Error::OutOfMemory { limit: format_bytes(memory) }.into();
        }
        let how = match code {
            // SIGKILL from inside the container, the flag unset: most often
            // the kernel's OOM killer, but the task may have exited so itself.
            137 => format!(
                "exited with code 137 (killed by SIGKILL; if it used its memory limit of {}, raise the task's `memory` option)",
                format_bytes(memory)
            ),
            code if code > 128 && code < 160 => {
                crate::executor::describe_exit(None, Some(i32::try_from(code - 128).unwrap_or_default()))
            }
            code => format!("exited with code {code}"),
        };
        Error::Crashed { how, last_output }.into()
    }
}

/// A container's output, multiplexed on its attach stream: one reader for
/// standard output and error alike, which stops at an envelope's end line.
struct Attached {
    reader: JoinHandle<(Option<Vec<u8>>, Option<String>)>,
    /// What the reader answered (standard output, `None` when too large;
    /// the log's last telling line), once it did.
    joined: Option<(Option<Vec<u8>>, Option<String>)>,
}

impl Attached {
    /// Waits for the reader after the container ended, at most
    /// [`DRAIN_GRACE`].
    async fn join(&mut self) {
        if self.joined.is_none() {
            self.joined = Some(match tokio::time::timeout(DRAIN_GRACE, &mut self.reader).await {
                Ok(joined) => joined.unwrap_or((Some(Vec::new()), None)),
                Err(_) => {
                    self.reader.abort();
                    (Some(Vec::new()), None)
                }
            });
        }
    }
}

impl Output for Attached {
    async fn stdout_read(&mut self) -> bool {
        let joined = (&mut self.reader).await.unwrap_or((Some(Vec::new()), None));
        let fits = joined.0.is_some();
        self.joined = Some(joined);
        fits
    }

    fn take_stdout(&mut self) -> Vec<u8> {
        self.joined.as_mut().and_then(|joined| joined.0.take()).unwrap_or_default()
    }

    /// A killed container's output is abandoned.
    async fn last_output(&mut self, exited: bool) -> Option<String> {
        if !exited {
            self.reader.abort();
            return None;
        }
        self.join().await;
        self.joined.as_mut().and_then(|joined| joined.1.take())
    }

    async fn stdout_rest(&mut self) -> bool {
        self.join().await;
        self.joined.as_ref().is_some_and(|joined| joined.0.is_some())
    }
}

/// The engine without a request timeout: waiting and streaming last as
/// long as the run (whose own [`Deadline`](crate::deadline::Deadline)
/// bounds them). bollard takes a `Duration`, not an `Option`, so "none" is
/// spelled as a century.
pub(super) fn unbounded(docker: &Docker) -> Docker {
    pub(super) const NO_REQUEST_TIMEOUT: Duration = Duration::from_secs(100 * 365 * 86_400);
    docker.clone().with_timeout(NO_REQUEST_TIMEOUT)
}

/// Attaches to the created container `id` (before it starts, so no output
/// is missed) and starts it.
pub(super) async fn attach_and_start(
    docker: &Docker,
    id: &str,
) -> Result<bollard::container::AttachContainerResults, Error> {
    let docker_error = |doing: &str| {
        let doing = doing.to_owned();
        move |e: bollard::errors::Error| Error::Docker { doing, message: e.to_string() }
    };
    let attach = AttachContainerOptions::<String> {
        stdin: Some(true),
        stdout: Some(true),
        stderr: Some(true),
        stream: Some(true),
        logs: Some(false),
        ..Default::default()
    };
    let attached = unbounded(docker)
        .attach_container(id, Some(attach))
        .await
        .map_err(docker_error("attaching to the container"))?;
    docker
        .start_container(id, None::<StartContainerOptions<String>>)
        .await
        .map_err(docker_error("starting the container"))?;
    Ok(attached)
}

/// A created container, removed when the run is over; if the run's future
/// is dropped first, removed in the background.
#[derive(Debug)]
pub(super) struct ContainerGuard {
    pub(super) docker: Docker,
    pub(super) id: String,
    pub(super) armed: bool,
    /// Its memory limit in bytes, for an out-of-memory message.
    pub(super) memory: u64,
}

impl ContainerGuard {
    pub(super) async fn remove(mut self) {
        let options = RemoveContainerOptions { force: true, v: true, ..Default::default() };
        if let Err(error) = self.docker.remove_container(&self.id, Some(options)).await {
            tracing::warn!(%error, container = %self.id, "taskflow docker executor: removing a container failed");
        }
        self.armed = false;
    }
}

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let docker = self.docker.clone();
            let id = std::mem::take(&mut self.id);
            runtime.spawn(async move {
                let options = RemoveContainerOptions { force: true, v: true, ..Default::default() };
                let _ = docker.remove_container(&id, Some(options)).await;
            });
        }
    }
}

/// `268435456` → `256 MiB`.
pub(super) fn format_bytes(bytes: u64) -> String {
    pub(super) const MIB: u64 = 1024 * 1024;
    if bytes >= 1024 * MIB && bytes % (1024 * MIB) == 0 {
        format!("{} GiB", bytes / (1024 * MIB))
    } else if bytes % MIB == 0 {
        format!("{} MiB", bytes / MIB)
    } else {
        format!("{bytes} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_options() {
        assert_eq!(format_bytes(256 * 1024 * 1024), "256 MiB");
        assert_eq!(format_bytes(2 * 1024 * 1024 * 1024), "2 GiB");
        assert_eq!(format_bytes(1000), "1000 bytes");
    }
}
