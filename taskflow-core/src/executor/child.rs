//! Child processes: the one place TaskFlow starts one ([`command`]), and
//! [`GroupChild`], which holds a child in its own process group and kills
//! the whole group when dropped, so neither a timeout, a cancelled future nor
//! a panic leaves a worker (or the processes it started) running.
//!
//! `clippy.toml` bans `Command::new` everywhere else in the crate.

use std::ffi::OsStr;
use std::process::Stdio;

/// A command for `program` with nothing inherited but the environment:
/// standard input, output and error are piped, the child leads a new process
/// group (so [`GroupChild`] can kill everything it starts), and tokio kills
/// it if its handle is dropped.
#[allow(clippy::disallowed_methods)] // the one sanctioned constructor
pub(crate) fn command(program: impl AsRef<OsStr>) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(program);
    command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    #[cfg(unix)]
    command.process_group(0);
    command
}

/// A running child that leads its own process group; dropping it kills the
/// group.
#[derive(Debug)]
pub(crate) struct GroupChild {
    child: tokio::process::Child,
    /// The process group (the child's pid), while it may have members.
    group: Option<u32>,
}

impl GroupChild {
    /// Starts `command` (made by [`command`]).
    pub(crate) fn spawn(command: &mut tokio::process::Command) -> std::io::Result<GroupChild> {
        let child = command.spawn()?;
        let group = child.id();
        Ok(GroupChild { child, group })
    }

    /// The child's handle, to take its pipes and wait for it.
    pub(crate) fn inner(&mut self) -> &mut tokio::process::Child {
        &mut self.child
    }

    /// Sends SIGKILL to the child's whole process group: the worker and
    /// anything it started. Harmless when they are gone.
    pub(crate) fn kill_group(&mut self) {
        #[cfg(unix)]
        if let Some(pid) = self.group.and_then(|g| rustix::process::Pid::from_raw(g as i32)) {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
        #[cfg(not(unix))]
        let _ = self.child.start_kill();
    }
}

impl Drop for GroupChild {
    fn drop(&mut self) {
        self.kill_group();
        self.group = None;
    }
}
