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
use bollard::models::HostConfig;
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use super::contents::{self};
use super::executor::DockerExecutor;
use super::images::WorkerImage;
use crate::deadline::Deadline;
use crate::error::TaskError;
use crate::executor::Error;
use crate::executor::frame::{self, LineSplitter};
use crate::executor::process::{MAX_LOG_LINE, short, telling};
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
        let id = container.id.as_str();
        let unbounded = unbounded(docker);
        let mut input = attached.input;
        // Closing our half of the connection closes the container's stdin
        // (`stdin_once`); a worker that exits early makes these fail, which
        // its exit explains.
        // Written beside the wait, so a worker that does not read cannot
        // stall the run past its timeout.
        let writer = tokio::spawn(async move {
            let _ = input.write_all(&body).await;
            let _ = input.flush().await;
            let _ = input.shutdown().await;
        });

        let cap = self.inner.config.max_result_bytes;
        let log_ctx = ctx.clone();
        let mut output = attached.output;
        let mut reader = tokio::spawn(async move {
            let mut stdout = Vec::new();
            let mut splitter = LineSplitter::new(MAX_LOG_LINE);
            let mut last = None;
            let ended = std::sync::atomic::AtomicBool::new(false);
            let mut forward = |line: &[u8]| {
                if enveloped && line == frame::END_LINE.as_bytes() {
                    ended.store(true, std::sync::atomic::Ordering::Relaxed);
                    return;
                }
                frame::forward_stderr_line(&log_ctx, line);
                if telling(line) {
                    last = Some(short(line));
                }
            };
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
                    Ok(LogOutput::StdErr { message } | LogOutput::Console { message }) => {
                        splitter.push(&message, &mut forward);
                    }
                    Ok(LogOutput::StdIn { .. }) => {}
                    Err(_) => break,
                }
                // A worker given an envelope says when its output is
                // complete: the frame, then the end line after every log
                // line. No need to wait for the engine to close the stream.
                if ended.load(std::sync::atomic::Ordering::Relaxed) && stdout.contains(&b'\n') {
                    break;
                }
            }
            splitter.finish(&mut forward);
            (if too_large { None } else { Some(stdout) }, last)
        });

        let mut wait = unbounded.wait_container(id, None::<WaitContainerOptions<String>>);
        let deadline = Deadline::within(timeout).reached();
        tokio::pin!(deadline);
        let mut read: Option<(Option<Vec<u8>>, Option<String>)> = None;
        let end = loop {
            tokio::select! {
                waited = wait.next() => break match waited {
                    Some(Ok(response)) => End::Exited(response.status_code),
                    Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => End::Exited(code),
                    Some(Err(error)) => End::Failed(Error::Docker { doing: "waiting for the container".to_owned(), message: error.to_string() }),
                    None => End::Failed(Error::Docker { doing: "waiting for the container".to_owned(), message: "the engine ended the wait without a status".to_owned() }),
                },
                joined = &mut reader, if read.is_none() => {
                    let joined = joined.unwrap_or((Some(Vec::new()), None));
                    match &joined.0 {
                        None => break End::TooLarge,
                        // The frame is the outcome: no need to wait for the
                        // engine to see the container exit.
                        Some(stdout) if !stdout.iter().all(u8::is_ascii_whitespace) => {
                            writer.abort();
                            return frame::decode_frame(stdout)?;
                        }
                        Some(_) => read = Some(joined),
                    }
                }
                () = &mut deadline => break End::TimedOut,
                () = ctx.cancelled() => break End::Cancelled,
            }
        };
        writer.abort();
        let code = match end {
            End::Exited(code) => code,
            other => {
                let options = KillContainerOptions { signal: "SIGKILL".to_owned() };
                let _ = docker.kill_container(id, Some(options)).await;
                reader.abort();
                return Err(match other {
                    End::TooLarge => Error::ResultTooLarge { limit: cap }.into(),
                    End::TimedOut => TaskError::TimedOut { after: timeout.unwrap_or_default() },
                    End::Failed(error) => error.into(),
                    _ => TaskError::Cancelled,
                });
            }
        };
        let (stdout, last_output) = match read {
            Some(read) => read,
            None => match tokio::time::timeout(DRAIN_GRACE, &mut reader).await {
                Ok(joined) => joined.unwrap_or((Some(Vec::new()), None)),
                Err(_) => {
                    reader.abort();
                    (Some(Vec::new()), None)
                }
            },
        };
        let Some(stdout) = stdout else {
            return Err(Error::ResultTooLarge { limit: cap }.into());
        };
        if !stdout.iter().all(u8::is_ascii_whitespace) {
            return frame::decode_frame(&stdout)?;
        }
        let oom_killed = docker
            .inspect_container(id, None)
            .await
            .ok()
            .and_then(|c| c.state)
            .and_then(|s| s.oom_killed)
            .unwrap_or(false);
        if oom_killed {
            return Err(Error::OutOfMemory { limit: format_bytes(container.memory) }.into());
        }
        let how = match code {
            // SIGKILL from inside the container, the flag unset: most often
            // the kernel's OOM killer, but the task may have exited so itself.
            137 => format!(
                "exited with code 137 (killed by SIGKILL; if it used its memory limit of {}, raise the task's `memory` option)",
                format_bytes(container.memory)
            ),
            code if code > 128 && code < 160 => {
                crate::executor::describe_exit(None, Some(i32::try_from(code - 128).unwrap_or_default()))
            }
            code => format!("exited with code {code}"),
        };
        Err(Error::Crashed { how, last_output }.into())
    }
}

/// The engine without a request timeout: waiting and streaming last as
/// long as the run (whose own [`Deadline`] bounds them). bollard takes a
/// `Duration`, not an `Option`, so "none" is spelled as a century.
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

/// How a wait for a container ended.
pub(super) enum End {
    Exited(i64),
    Failed(Error),
    TooLarge,
    TimedOut,
    Cancelled,
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
