//! The writer thread and group commit: the one read-write connection runs
//! whatever is queued in one transaction, each command in its own savepoint.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc;

use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::oneshot;

use super::rows::db;
use super::{BATCH_CAP, Error, Result};

/// A queued write: runs inside its savepoint, answers after the commit.
pub(super) trait Command: Send {
    /// How the command's changes are undone when it fails.
    fn isolation(&self) -> Isolation;
    /// Runs the command; returns whether it succeeded (its savepoint is
    /// released) or failed (its savepoint is rolled back).
    fn execute(&mut self, conn: &Connection) -> bool;
    /// Records a failure around the command (its savepoint).
    fn fail(&mut self, error: Error);
    /// Why the command failed, once it has.
    fn failure(&self) -> Option<Error>;
    /// Sends the answer: the command's own outcome, or the batch's failure.
    fn reply(self: Box<Self>, batch_failure: Option<&Error>);
}

pub(super) type Op<T> = Box<dyn FnOnce(&Connection) -> Result<T> + Send>;

/// How a failing command's changes are undone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Isolation {
    /// The command runs in a savepoint, rolled back if it fails.
    Savepoint,
    /// The command changes the database in its last statement only, which
    /// SQLite undoes by itself if it fails.
    LastStatement,
}

pub(super) struct Job<T> {
    pub(super) op: Option<Op<T>>,
    pub(super) isolation: Isolation,
    pub(super) outcome: Option<Result<T>>,
    pub(super) reply: oneshot::Sender<Result<T>>,
}

impl<T: Send> Command for Job<T> {
    fn isolation(&self) -> Isolation {
        self.isolation
    }

    fn execute(&mut self, conn: &Connection) -> bool {
        let Some(op) = self.op.take() else { return false };
        let outcome = catch_unwind(AssertUnwindSafe(|| op(conn)))
            .unwrap_or_else(|_| Err(Error::other("internal error: a store command panicked")));
        let ok = outcome.is_ok();
        self.outcome = Some(outcome);
        ok
    }

    fn fail(&mut self, error: Error) {
        self.outcome = Some(Err(error));
    }

    fn failure(&self) -> Option<Error> {
        match &self.outcome {
            Some(Err(error @ Error::Database(_))) => Some(error.clone()),
            // Shared with the batch's other commands: a database failure
            // of theirs, not this command's refusal (`NotFound` of its run).
            Some(Err(error)) => Some(Error::other(error.to_string())),
            _ => None,
        }
    }

    fn reply(self: Box<Self>, batch_failure: Option<&Error>) {
        let outcome = match batch_failure {
            Some(error) => Err(error.clone()),
            None => self.outcome.unwrap_or_else(|| Err(Error::other("internal error: a store command did not run"))),
        };
        // The caller may have stopped waiting; that is not our concern.
        let _ = self.reply.send(outcome);
    }
}

pub(super) fn write_loop(mut conn: Connection, commands: &mpsc::Receiver<Box<dyn Command>>) {
    let mut batch: Vec<Box<dyn Command>> = Vec::with_capacity(BATCH_CAP);
    while let Ok(first) = commands.recv() {
        batch.push(first);
        while batch.len() < BATCH_CAP {
            match commands.try_recv() {
                Ok(command) => batch.push(command),
                Err(_) => break,
            }
        }
        let failure = run_batch(&mut conn, &mut batch).err();
        for command in batch.drain(..) {
            command.reply(failure.as_ref());
        }
    }
}

/// Runs a batch in one transaction, each command in its own savepoint.
///
/// The savepoint statements are prepared once and cached: rusqlite's
/// `Savepoint` formats and parses `SAVEPOINT` / `RELEASE` at every use,
/// which cost more than the commands themselves (three per run).
pub(super) fn run_batch(conn: &mut Connection, batch: &mut [Box<dyn Command>]) -> Result<()> {
    let tx =
        conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(db("cannot begin a transaction"))?;
    for command in batch.iter_mut() {
        if command.isolation() == Isolation::LastStatement {
            // A failed statement undid itself; but an I/O or out-of-memory
            // error rolls the whole transaction back, and the commands after
            // it must not run outside one.
            if !command.execute(&tx) && tx.is_autocommit() {
                let reason = command.failure().unwrap_or_else(|| Error::other("unknown"));
                return Err(reason.within("the batch was rolled back"));
            }
            continue;
        }
        if let Err(e) = savepoint(&tx, "SAVEPOINT command") {
            command.fail(db("cannot create a savepoint")(e));
            continue;
        }
        if command.execute(&tx) {
            if let Err(e) = savepoint(&tx, "RELEASE command") {
                command.fail(db("cannot release a savepoint")(e));
                roll_back(&tx).map_err(db("cannot roll back a command"))?;
            }
        } else if tx.is_autocommit() {
            // SQLite itself rolled the whole transaction back (a full disk,
            // an I/O error): every command of the batch fails, for this
            // command's reason.
            let reason = command.failure().unwrap_or_else(|| Error::other("unknown"));
            return Err(reason.within("the batch was rolled back"));
        } else {
            // The failed command's changes might survive otherwise: fail the batch.
            roll_back(&tx).map_err(db("cannot roll back a failed command"))?;
        }
    }
    tx.commit().map_err(db("cannot commit"))
}

/// Runs one savepoint statement through the statement cache.
fn savepoint(conn: &Connection, sql: &'static str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

/// Undoes the current command: back to its savepoint, which is then ended.
fn roll_back(conn: &Connection) -> rusqlite::Result<()> {
    savepoint(conn, "ROLLBACK TO command")?;
    savepoint(conn, "RELEASE command")
}
