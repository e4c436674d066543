//! The one loop the process and Docker executors drive a worker with (a
//! child process running `__run <title>`, or a container): its input
//! written beside the wait, its standard output read capped (the result
//! frame, [`frame`]), its standard error forwarded line by line into the
//! run's log, the deadline and a cancel watched, until it ends with a frame
//! or a crash — never a hang.
//!
//! What differs between the two is said, not copied: a [`Worker`] is how the
//! worker is waited for and stopped and what its end without a frame means;
//! an [`Output`] is how its output arrives (two pipes, [`Pipes`], or the
//! Docker executor's one multiplexed stream); [`DriveOptions`] hold the run's
//! limits and whether the frame alone ends it.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::task::JoinHandle;

use super::Error;
use super::frame::{self, LineSplitter};
use crate::deadline::Deadline;
use crate::error::TaskError;
use crate::task::context::TaskContext;
use crate::task::registry::TaskResult;

/// Longest log line kept from a worker's standard error; the rest of a
/// longer line is dropped.
pub(crate) const MAX_LOG_LINE: usize = 64 * 1024;

/// A running worker: how it is waited for and stopped, and what its end
/// without a frame means.
pub(crate) trait Worker {
    /// How it ended on its own: an exit status, a container's exit code.
    type Exit: Send;
    /// Why waiting for it failed.
    type WaitError: Send;

    /// Waits for its end. Cancel-safe: it is polled in the loop and dropped
    /// when the run ends otherwise.
    fn wait(&mut self) -> impl Future<Output = Result<Self::Exit, Self::WaitError>> + Send;

    /// Called once the run's end is known, unless the frame alone ended it
    /// (see [`DriveOptions::wait_for_exit`]): `exited` when the worker
    /// ended on its own and was waited for; otherwise it must be killed.
    fn stop(&mut self, exited: bool) -> impl Future<Output = ()> + Send;

    /// After [`stop`](Worker::stop) for a timeout or a cancel (and the log
    /// drained), before the run's outcome is told: waits until the worker
    /// is gone, if it can be waited for.
    fn reap(&mut self) -> impl Future<Output = ()> + Send;

    /// The run's error when waiting for it failed.
    fn wait_failed(&self, error: Self::WaitError, last_output: Option<String>) -> TaskError;

    /// The run's error when it ended with nothing on standard output:
    /// `last_output` is the last telling line of its log.
    fn crashed(&mut self, exit: Self::Exit, last_output: Option<String>) -> impl Future<Output = TaskError> + Send;
}

/// How a worker's output is read: its standard output capped, for the
/// result frame; its standard error forwarded into the run's log as it
/// comes. Each method completes at most once, in the order below.
pub(crate) trait Output {
    /// Completes once standard output was read to its end: `false` as soon
    /// as it is more than the cap. Cancel-safe; not polled again once it
    /// completed.
    fn stdout_read(&mut self) -> impl Future<Output = bool> + Send;

    /// What was read of standard output (all of it once
    /// [`stdout_read`](Output::stdout_read) or
    /// [`stdout_rest`](Output::stdout_rest) said it fits).
    fn take_stdout(&mut self) -> Vec<u8>;

    /// After the worker was stopped: the last telling line of its log.
    /// `exited` when it ended on its own.
    fn last_output(&mut self, exited: bool) -> impl Future<Output = Option<String>> + Send;

    /// After the worker ended on its own, when
    /// [`stdout_read`](Output::stdout_read) has not completed: reads what
    /// is left of standard output (an output held open is abandoned after a
    /// grace period); `false` when it is more than the cap.
    fn stdout_rest(&mut self) -> impl Future<Output = bool> + Send;
}

/// What one drive is bounded by.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DriveOptions {
    /// The run's timeout.
    pub(crate) timeout: Option<Duration>,
    /// The largest result frame accepted, in bytes.
    pub(crate) max_result_bytes: usize,
    /// Whether the worker's end is waited for once its frame has arrived.
    /// A child process is (its exit reaped, its process group killed
    /// after); for a container the frame is the outcome: no need to wait
    /// for the engine to see the container exit.
    pub(crate) wait_for_exit: bool,
}

/// How the wait for a worker ended.
enum End<X, E> {
    Exited(X),
    WaitFailed(E),
    TooLarge,
    TimedOut,
    Cancelled,
}

/// Writes `input` to the worker, reads its `output` and waits for its end,
/// the deadline and a cancel of `ctx`: the run's outcome.
pub(crate) async fn drive<W: Worker>(
    worker: &mut W,
    input: Option<impl AsyncWrite + Send + Unpin + 'static>,
    body: Vec<u8>,
    mut output: impl Output,
    ctx: &TaskContext,
    options: DriveOptions,
) -> TaskResult {
    // Written beside the wait, so a worker that does not read cannot stall
    // the run past its timeout. Closing the input closes the worker's
    // standard input; a worker that exits without reading its input makes
    // these fail, which its exit explains.
    let writer = tokio::spawn(async move {
        if let Some(mut input) = input {
            let _ = input.write_all(&body).await;
            let _ = input.flush().await;
            let _ = input.shutdown().await;
        }
    });
    let too_large = || -> TaskError { Error::ResultTooLarge { limit: options.max_result_bytes }.into() };
    let deadline = Deadline::within(options.timeout).reached();
    tokio::pin!(deadline);
    let mut stdout: Option<Vec<u8>> = None;
    let end = loop {
        tokio::select! {
            waited = worker.wait() => break match waited {
                Ok(exit) => End::Exited(exit),
                Err(error) => End::WaitFailed(error),
            },
            fits = output.stdout_read(), if stdout.is_none() => {
                if !fits {
                    break End::TooLarge;
                }
                let read = output.take_stdout();
                // Unless the worker's end is waited for, the frame is the
                // outcome.
                if !options.wait_for_exit && !blank(&read) {
                    writer.abort();
                    return frame::decode_frame(&read)?;
                }
                stdout = Some(read);
            }
            () = &mut deadline => break End::TimedOut,
            () = ctx.cancelled() => break End::Cancelled,
        }
    };
    writer.abort();
    let exited = matches!(end, End::Exited(_));
    worker.stop(exited).await;
    let last_output = output.last_output(exited).await;
    let exit = match end {
        End::Exited(exit) => exit,
        End::WaitFailed(error) => return Err(worker.wait_failed(error, last_output)),
        End::TooLarge => return Err(too_large()),
        End::TimedOut => {
            worker.reap().await;
            return Err(TaskError::TimedOut { after: options.timeout.unwrap_or_default() });
        }
        End::Cancelled => {
            worker.reap().await;
            return Err(TaskError::Cancelled);
        }
    };
    let stdout = match stdout {
        Some(stdout) => stdout,
        None if output.stdout_rest().await => output.take_stdout(),
        None => return Err(too_large()),
    };
    if blank(&stdout) {
        return Err(worker.crashed(exit, last_output).await);
    }
    frame::decode_frame(&stdout)?
}

/// Whether standard output holds nothing: no frame, a crash.
fn blank(stdout: &[u8]) -> bool {
    stdout.iter().all(u8::is_ascii_whitespace)
}

/// A worker's output on two pipes (a child process), each read by its own
/// task: standard output into a buffer, standard error into the log.
pub(crate) struct Pipes {
    /// Shared, so what was read survives a reader abandoned after the
    /// grace period (a process outside the group holding stdout open).
    read_so_far: Arc<Mutex<Vec<u8>>>,
    frame_reader: JoinHandle<bool>,
    logger: JoinHandle<Option<String>>,
    /// How long output still open after the worker ended (or was killed) is
    /// read before it is abandoned.
    grace: Duration,
}

impl Pipes {
    /// Starts reading `stdout` (at most `cap` bytes) and forwarding
    /// `stderr` to the log of `ctx`.
    pub(crate) fn spawn(
        stdout: Option<impl AsyncRead + Send + Unpin + 'static>,
        stderr: Option<impl AsyncRead + Send + Unpin + 'static>,
        ctx: &TaskContext,
        cap: usize,
        grace: Duration,
    ) -> Pipes {
        let read_so_far = Arc::new(Mutex::new(Vec::new()));
        let frame_reader = {
            let read_so_far = read_so_far.clone();
            tokio::spawn(async move {
                match stdout {
                    Some(stdout) => read_capped(stdout, cap, &read_so_far).await,
                    None => true,
                }
            })
        };
        let log_ctx = ctx.clone();
        let logger = tokio::spawn(async move {
            match stderr {
                Some(stderr) => forward_lines(stderr, log_ctx).await,
                None => None,
            }
        });
        Pipes { read_so_far, frame_reader, logger, grace }
    }
}

impl Output for Pipes {
    async fn stdout_read(&mut self) -> bool {
        (&mut self.frame_reader).await.unwrap_or(true)
    }

    fn take_stdout(&mut self) -> Vec<u8> {
        std::mem::take(&mut *self.read_so_far.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Whatever happened, the worker's process group was killed: its
    /// standard error closes, and what it still held is forwarded.
    async fn last_output(&mut self, _exited: bool) -> Option<String> {
        match tokio::time::timeout(self.grace, &mut self.logger).await {
            Ok(last) => last.ok().flatten(),
            Err(_) => {
                self.logger.abort();
                None
            }
        }
    }

    async fn stdout_rest(&mut self) -> bool {
        match tokio::time::timeout(self.grace, &mut self.frame_reader).await {
            Ok(Ok(fits)) => fits,
            Ok(Err(_)) => true,
            Err(_) => {
                self.frame_reader.abort();
                true
            }
        }
    }
}

/// Reads `reader` to its end into `out`; `false` as soon as that would be
/// more than `cap` bytes.
async fn read_capped(mut reader: impl AsyncRead + Unpin, cap: usize, out: &Mutex<Vec<u8>>) -> bool {
    let mut chunk = vec![0; 64 * 1024];
    loop {
        match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => return true,
            Ok(n) => {
                let mut out = out.lock().unwrap_or_else(|e| e.into_inner());
                if out.len() + n > cap {
                    return false;
                }
                out.extend_from_slice(&chunk[..n]);
            }
        }
    }
}

/// Forwards each line of `reader` to the run's log as it comes; answers the
/// last non-empty line (shortened), for a crash's message.
async fn forward_lines(mut reader: impl AsyncRead + Unpin, ctx: TaskContext) -> Option<String> {
    let mut log = LogLines::new(ctx, false);
    let mut chunk = vec![0; 16 * 1024];
    loop {
        match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => log.push(&chunk[..n]),
        }
    }
    log.finish()
}

/// A worker's standard error on its way into the run's log: split into
/// lines of at most [`MAX_LOG_LINE`] bytes, each forwarded as it comes, the
/// last telling one kept for a crash's message.
pub(crate) struct LogLines {
    splitter: LineSplitter,
    sink: LogSink,
}

/// Where [`LogLines`] puts each line.
struct LogSink {
    ctx: TaskContext,
    last: Option<String>,
    /// The worker was given an [`frame::Envelope`]: its
    /// [`frame::END_LINE`] is not a log line but says its output is
    /// complete.
    enveloped: bool,
    ended: bool,
}

impl LogLines {
    /// Lines for the log of `ctx`; `enveloped` when the worker was given an
    /// envelope.
    pub(crate) fn new(ctx: TaskContext, enveloped: bool) -> LogLines {
        let sink = LogSink { ctx, last: None, enveloped, ended: false };
        LogLines { splitter: LineSplitter::new(MAX_LOG_LINE), sink }
    }

    /// Feeds `bytes` of standard error.
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        self.splitter.push(bytes, |line| self.sink.line(line));
    }

    /// Whether the end line came.
    #[cfg_attr(not(feature = "docker"), allow(dead_code))]
    pub(crate) fn ended(&self) -> bool {
        self.sink.ended
    }

    /// The end of standard error: its last telling line.
    pub(crate) fn finish(mut self) -> Option<String> {
        self.splitter.finish(|line| self.sink.line(line));
        self.sink.last
    }
}

impl LogSink {
    /// Forwards one line, or notes the end line.
    fn line(&mut self, line: &[u8]) {
        if self.enveloped && line == frame::END_LINE.as_bytes() {
            self.ended = true;
            return;
        }
        frame::forward_stderr_line(&self.ctx, line);
        if telling(line) {
            self.last = Some(short(line));
        }
    }
}

/// Whether a line of standard error says something about a crash: not
/// empty, and not part of a backtrace (indented frames, `stack backtrace:`,
/// the `RUST_BACKTRACE` notes), so a crash's message quotes the line that
/// matters ("memory allocation of … failed").
fn telling(line: &[u8]) -> bool {
    let text = String::from_utf8_lossy(line);
    !(text.trim().is_empty()
        || text.starts_with(char::is_whitespace)
        || text.starts_with("stack backtrace:")
        || (text.starts_with("note: ") && text.contains("RUST_BACKTRACE")))
}

/// A line for an error message: at most 300 characters.
fn short(line: &[u8]) -> String {
    let text = String::from_utf8_lossy(line);
    let text = text.trim();
    let mut short: String = text.chars().take(300).collect();
    if short.len() < text.len() {
        short.push('…');
    }
    short
}
