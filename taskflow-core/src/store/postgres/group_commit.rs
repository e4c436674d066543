//! Group commit: the submits and finishes that arrive together are written
//! by one statement.
//!
//! One transaction per write costs a handful of round trips and a WAL flush
//! each, and a server then spends its CPU on loopback TCP and context
//! switches rather than on runs. Here writers hand their command to a
//! batcher and wait; the batcher takes whatever has queued up (up to
//! [`MAX_BATCH`]) and writes it, with at most [`IN_FLIGHT`] batches at a
//! time. A command alone goes out at once, so a quiet server waits for
//! nobody; under load the queue fills while the batches in flight commit,
//! and the next batch is larger. Every answer is sent after the statement
//! that wrote it commits: an acknowledged submit is as durable as one
//! committed alone, and a later failure of the batch does not take back
//! an answer.
//!
//! A batch reads first (the active runs its de-duplicated submits share,
//! the runs its reports are about), decides in Rust (`apply`, so every
//! status change still goes through `run::transition`), and then writes
//! every insert, update and notification in one statement, which commits
//! on its own: no row lock is held across a round trip, so a heartbeat on
//! a slow network never waits behind a batch. A finish is therefore a
//! compare-and-set on the run's holder (running, this attempt, this
//! worker); a run that changed between the read and the write is read and
//! decided again in a later round, a statement of its own.
//!
//! Submits with an idempotency key are not batched (they look the key up
//! first and answer conflicts). A de-duplicated submit that loses a race
//! with another server's (the unique index refuses its row) is answered by
//! the one-transaction path after the first round, which finds the
//! winner's run.
//!
//! A command is written even when its caller stops waiting for the answer:
//! a submit whose client went away may still create its run.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use sqlx_core::row::Row;
use sqlx_postgres::{PgConnection, PgPool};
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::rows::{db, query, read_run, storable};
use super::writes::{ChangedColumns, submit};
use super::{CHANNEL, NOTIFY_CHUNK, RUN_COLUMNS};
use crate::run::{Run, RunError, RunId, RunStatus, Timestamp};
use crate::store::row::to_i64;
use crate::store::{DatabaseError, DatabaseErrorKind, Error, NewRun, Outcome, Report, Result, Submitted, apply};

/// The most commands one transaction writes.
const MAX_BATCH: usize = 512;
/// The most batches writing at once, each on its own connection of the
/// pool (which the other writes and the reads share).
const IN_FLIGHT: usize = 4;
/// How often a finish whose run changed under it is decided again.
const FINISH_ROUNDS: usize = 3;
/// How often a batch that PostgreSQL aborted as a deadlock is tried again.
const DEADLOCK_TRIES: usize = 3;

/// A write waiting for its batch.
enum Command {
    Submit { new: NewRun, reply: oneshot::Sender<Result<Submitted>> },
    Finish { report: Report, reply: oneshot::Sender<Result<Run>> },
}

/// The handle writers queue their commands on; the batcher stops when the
/// last handle is dropped, after writing what was queued.
pub(super) struct GroupCommit {
    commands: mpsc::UnboundedSender<Command>,
    /// The tests' way into the batches (see [`Hooks`]).
    #[cfg_attr(not(test), allow(dead_code))]
    hooks: Hooks,
}

/// What a test may do to the batches: run code before each round's write
/// (change runs under the batch, or fail the round). Empty outside tests.
#[derive(Clone, Default)]
pub(super) struct Hooks {
    #[cfg(test)]
    before_write: Arc<std::sync::Mutex<Option<BeforeWrite>>>,
}

/// A test's hook, called with the round's number before its write; an
/// error fails the round as the write's would.
#[cfg(test)]
type BeforeWrite = Arc<dyn Fn(usize) -> crate::future::BoxFuture<Result<()>> + Send + Sync>;

/// Runs the test's hook, if any, before round `round` writes.
async fn before_write(hooks: &Hooks, round: usize) -> Result<()> {
    #[cfg(test)]
    {
        let hook = hooks.before_write.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        if let Some(hook) = hook {
            return hook(round).await;
        }
    }
    let _ = (hooks, round);
    Ok(())
}

impl GroupCommit {
    /// Starts the batcher on the current Tokio runtime.
    pub(super) fn start(pool: PgPool, origin: Arc<str>) -> GroupCommit {
        let (commands, queue) = mpsc::unbounded_channel();
        let hooks = Hooks::default();
        tokio::spawn(batcher(pool, origin, hooks.clone(), queue));
        GroupCommit { commands, hooks }
    }

    /// Calls `hook` before each round's write, from the next batch on.
    #[cfg(test)]
    fn before_write(&self, hook: impl Fn(usize) -> crate::future::BoxFuture<Result<()>> + Send + Sync + 'static) {
        *self.hooks.before_write.lock().unwrap() = Some(Arc::new(hook));
    }

    /// Submits `new` (without an idempotency key) in the next batch.
    pub(super) async fn submit(&self, new: NewRun) -> Result<Submitted> {
        debug_assert!(new.idempotency_key.is_none(), "keyed submits are not batched");
        let (reply, answer) = oneshot::channel();
        self.commands.send(Command::Submit { new, reply }).map_err(|_| Error::Closed)?;
        answer.await.map_err(|_| Error::Closed)?
    }

    /// Records `report` in the next batch.
    pub(super) async fn finish(&self, report: Report) -> Result<Run> {
        let (reply, answer) = oneshot::channel();
        self.commands.send(Command::Finish { report, reply }).map_err(|_| Error::Closed)?;
        answer.await.map_err(|_| Error::Closed)?
    }
}

async fn batcher(pool: PgPool, origin: Arc<str>, hooks: Hooks, mut queue: mpsc::UnboundedReceiver<Command>) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut commands = Vec::new();
    loop {
        // A slot first: while every slot is busy the queue grows, and the
        // next batch takes all of it.
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        if queue.recv_many(&mut commands, MAX_BATCH).await == 0 {
            return;
        }
        let batch = std::mem::take(&mut commands);
        let (pool, origin, hooks) = (pool.clone(), origin.clone(), hooks.clone());
        tokio::spawn(async move {
            write(&pool, &origin, &hooks, batch).await;
            drop(slot);
        });
    }
}

/// Writes one batch and answers every command in it, each once the round
/// that decided it has committed: the submits (and the finishes decided at
/// once) after round 0, a finish decided again after its later round.
///
/// Each round is one statement that commits on its own, so a failing round
/// fails only the commands still unanswered (an error for a committed
/// submit would make its client submit it again), and a round PostgreSQL
/// aborted as a deadlock, having written nothing, is tried again alone.
/// The submits are planned once: a retry never makes a new run (a new id)
/// for a submit that round 0 wrote.
async fn write(pool: &PgPool, origin: &str, hooks: &Hooks, batch: Vec<Command>) {
    let (mut new_runs, mut submit_replies) = (Vec::new(), Vec::new());
    let (mut reports, mut finish_replies) = (Vec::new(), Vec::new());
    for command in batch {
        match command {
            Command::Submit { new, reply } => {
                new_runs.push(new);
                submit_replies.push(reply);
            }
            Command::Finish { report, reply } => {
                reports.push(report);
                finish_replies.push(Some(reply));
            }
        }
    }
    let news: Vec<&NewRun> = new_runs.iter().collect();
    let reports: Vec<&Report> = reports.iter().collect();
    let planned = async {
        let mut conn = pool.acquire().await.map_err(db("cannot write a batch"))?;
        let plan = plan_submits(&mut conn, &news, Timestamp::now()).await?;
        Ok::<_, Error>((conn, plan))
    };
    let (mut conn, plan) = match planned.await {
        Ok(planned) => planned,
        Err(error) => return fail_rest(&error, submit_replies, &mut finish_replies),
    };
    let fresh = plan.new_rows(&news);
    let none = NewRows::default();
    let mut submit_replies = Some(submit_replies);
    let mut open: Vec<usize> = (0..reports.len()).collect();
    for round in 0..FINISH_ROUNDS {
        let rows = if round == 0 { &fresh } else { &none };
        let (decided, written) = match write_round(&mut conn, origin, hooks, round, rows, &reports, &open).await {
            Ok(round) => round,
            Err(error) => return fail_rest(&error, submit_replies.unwrap_or_default(), &mut finish_replies),
        };
        if let Some(replies) = submit_replies.take() {
            let created: HashSet<RunId> =
                plan.fresh.values().map(|run| run.id).filter(|id| written.contains(&id.as_uuid())).collect();
            for ((new, reply), answer) in news.iter().zip(replies).zip(plan.answers(&created)) {
                // `None`: lost a race on the unique index to another
                // connection's equal submit; submitted again alone.
                let answer = match answer {
                    Some(submitted) => Ok(submitted),
                    None => submit(pool, origin, (*new).clone(), Timestamp::now()).await,
                };
                let _ = reply.send(answer);
            }
        }
        // A run that changed since it was read is decided again, with
        // every report of the batch about it.
        let moved: HashSet<RunId> =
            decided.changed.iter().map(|held| held.run.id).filter(|id| !written.contains(&id.as_uuid())).collect();
        open.clear();
        for (i, answer) in decided.answers {
            if moved.contains(&reports[i].id) {
                open.push(i);
            } else if let Some(reply) = finish_replies[i].take() {
                let _ = reply.send(answer);
            }
        }
        if open.is_empty() {
            return;
        }
    }
    for i in open {
        let error = DatabaseError::new(
            DatabaseErrorKind::Busy,
            format!("run {} kept changing while its outcome was stored; try again", reports[i].id),
        );
        if let Some(reply) = finish_replies[i].take() {
            let _ = reply.send(Err(Error::Database(error.for_run(reports[i].id))));
        }
    }
}

/// Answers `error` to `submits` and to the finishes not answered yet.
fn fail_rest(
    error: &Error,
    submits: Vec<oneshot::Sender<Result<Submitted>>>,
    finishes: &mut [Option<oneshot::Sender<Result<Run>>>],
) {
    for reply in submits {
        let _ = reply.send(Err(error.clone()));
    }
    for reply in finishes.iter_mut().filter_map(Option::take) {
        let _ = reply.send(Err(error.clone()));
    }
}

/// One round of a batch: reads and decides the `open` reports, then writes
/// their changes and `fresh` (round 0's new runs) in one statement
/// ([`write_changes`]), which commits on its own. No row lock is held
/// across a round trip — a heartbeat never waits for a batch on a slow
/// network — so a finish is a compare-and-set: its run is updated only if
/// it is still running the reporting attempt for the reporting worker.
/// Returns the decisions and the ids written. A round that PostgreSQL
/// aborted as a deadlock wrote nothing and is tried again, decided anew.
async fn write_round(
    conn: &mut PgConnection,
    origin: &str,
    hooks: &Hooks,
    round: usize,
    fresh: &NewRows,
    reports: &[&Report],
    open: &[usize],
) -> Result<(Decided, HashSet<uuid::Uuid>)> {
    let mut tries = 1;
    loop {
        let outcome = async {
            let decided = decide_finishes(&mut *conn, reports, open).await?;
            before_write(hooks, round).await?;
            let written = write_changes(&mut *conn, origin, fresh, &decided.changed).await?;
            Ok::<_, Error>((decided, written))
        }
        .await;
        match outcome {
            Err(error) if error.database_kind() == Some(DatabaseErrorKind::Deadlock) && tries < DEADLOCK_TRIES => {
                tries += 1;
            }
            other => return other,
        }
    }
}

/// What the submits of a batch come to, before anything is written.
struct SubmitPlan {
    /// The unique key of each submit.
    keys: Vec<Vec<u8>>,
    /// For each submit, the submit whose run it gets (itself if none): for
    /// a de-duplicated one, the first equal de-duplicated submit of the
    /// batch if that found an active run, else the first equal submit of
    /// the batch, plain or not.
    leader: Vec<usize>,
    /// The active runs leaders found.
    existing: HashMap<usize, Run>,
    /// The runs created for the other leaders, by index.
    fresh: HashMap<usize, Run>,
}

impl SubmitPlan {
    /// The rows of the runs to create, in id order.
    fn new_rows(&self, news: &[&NewRun]) -> NewRows {
        let mut fresh: Vec<(&usize, &Run)> = self.fresh.iter().collect();
        fresh.sort_unstable_by_key(|(_, run)| run.id);
        let mut rows = NewRows::default();
        for (i, run) in fresh {
            rows.push(run, self.keys[*i].clone(), news[*i].unique);
        }
        rows
    }

    /// Each submit's answer, given the runs created; `None` for a submit
    /// whose new run the unique index refused (another connection's equal
    /// submit won).
    fn answers(&self, created: &HashSet<RunId>) -> Vec<Option<Submitted>> {
        (0..self.leader.len())
            .map(|i| {
                let lead = self.leader[i];
                if let Some(run) = self.existing.get(&lead) {
                    return Some(Submitted { run: run.clone(), created: false });
                }
                let run = self.fresh.get(&lead).filter(|run| created.contains(&run.id))?;
                Some(Submitted { run: run.clone(), created: lead == i })
            })
            .collect()
    }
}

/// Finds the active runs de-duplicated submits share (one statement) and
/// makes the runs of the others.
async fn plan_submits(conn: &mut PgConnection, news: &[&NewRun], now: Timestamp) -> Result<SubmitPlan> {
    let keys: Vec<Vec<u8>> = news.iter().map(|new| new.unique_key().into_bytes()).collect();
    // The first de-duplicated submit of each key looks for the active run.
    let mut first: HashMap<&[u8], usize> = HashMap::new();
    let mut leader: Vec<usize> =
        (0..news.len()).map(|i| if news[i].unique { *first.entry(&keys[i]).or_insert(i) } else { i }).collect();

    let (at, lookup): (Vec<i64>, Vec<&[u8]>) =
        (0..news.len()).filter(|i| news[*i].unique && leader[*i] == *i).map(|i| (i as i64, keys[i].as_slice())).unzip();
    let mut existing = HashMap::new();
    if !lookup.is_empty() {
        let sql = format!(
            "SELECT {RUN_COLUMNS}, q.i FROM unnest($1::bytea[], $2::bigint[]) AS q (k, i) \
             CROSS JOIN LATERAL (SELECT * FROM taskflow_runs \
                 WHERE unique_key = sha256(q.k) AND status IN ('pending', 'running') ORDER BY id LIMIT 1) AS r"
        );
        let rows = query(&sql)
            .bind(&lookup)
            .bind(&at)
            .fetch_all(&mut *conn)
            .await
            .map_err(db("cannot look up active runs"))?;
        for row in &rows {
            let i: i64 = row.try_get(23).map_err(db("cannot look up active runs"))?;
            existing.insert(usize::try_from(i).unwrap_or(usize::MAX), read_run(row)?);
        }
    }
    // Finding none, a de-duplicated submit gets the run of the first equal
    // submit of the batch, plain or not, as it would had that committed
    // first (SQLite's writer, running a batch's commands in order, finds
    // it): a unique submit finds any pending or running equal run.
    let mut first: HashMap<&[u8], usize> = HashMap::new();
    for i in 0..news.len() {
        let first = *first.entry(&keys[i]).or_insert(i);
        if news[i].unique && !existing.contains_key(&leader[i]) {
            leader[i] = first;
        }
    }
    let fresh = (0..news.len())
        .filter(|i| leader[*i] == *i && !existing.contains_key(i))
        .map(|i| apply::create(news[i], now).map(|run| (i, run)))
        .collect::<Result<_>>()?;
    Ok(SubmitPlan { keys, leader, existing, fresh })
}

/// A run as a report left it, and who held it before: the write applies
/// only if it still is so held.
struct Held {
    run: Run,
    attempt: u32,
    worker_id: String,
}

/// The decisions on the reports `open`.
struct Decided {
    /// `(index of the report, its answer)`.
    answers: Vec<(usize, Result<Run>)>,
    /// The runs to write, one per run, in id order.
    changed: Vec<Held>,
}

/// Reads the runs of the `open` reports and applies the reports to them, in
/// order (a second report about one run sees the first's change).
async fn decide_finishes(conn: &mut PgConnection, reports: &[&Report], open: &[usize]) -> Result<Decided> {
    if open.is_empty() {
        return Ok(Decided { answers: Vec::new(), changed: Vec::new() });
    }
    let ids: Vec<uuid::Uuid> = open.iter().map(|i| reports[*i].id.as_uuid()).collect();
    let sql = format!("SELECT {RUN_COLUMNS} FROM taskflow_runs WHERE id = ANY($1)");
    let rows = query(&sql).bind(&ids).fetch_all(&mut *conn).await.map_err(db("cannot read runs"))?;
    let mut runs: HashMap<RunId, Run> = HashMap::with_capacity(rows.len());
    for row in &rows {
        let run = read_run(row)?;
        runs.insert(run.id, run);
    }

    // The holder each changed run had when read.
    let mut held: HashMap<RunId, (u32, String)> = HashMap::new();
    let mut answers = Vec::with_capacity(open.len());
    for &i in open {
        let mut report = reports[i].clone();
        if let Outcome::Failed { error, .. } = &mut report.outcome {
            *error = RunError { kind: storable(&error.kind), message: storable(&error.message) };
        }
        let Some(run) = runs.get_mut(&report.id) else {
            answers.push((i, Err(Error::NotFound(report.id))));
            continue;
        };
        let holder = (run.attempt, run.worker_id.clone().unwrap_or_default());
        // Applied to a copy: a refused report leaves the run as it was.
        let mut next = run.clone();
        match apply::finish(&mut next, report) {
            Ok(()) => {
                held.entry(run.id).or_insert(holder);
                *run = next.clone();
                answers.push((i, Ok(next)));
            }
            Err(error) => answers.push((i, Err(error))),
        }
    }
    let mut changed: Vec<Held> = held
        .into_iter()
        .filter_map(|(id, (attempt, worker_id))| Some(Held { run: runs.remove(&id)?, attempt, worker_id }))
        .collect();
    changed.sort_unstable_by_key(|held| held.run.id);
    Ok(Decided { answers, changed })
}

/// Inserts `fresh` (runs of `news`), applies `changed` where still held,
/// and announces what it wrote — in one statement, so one round trip and
/// one commit. Returns the ids written: a de-duplicated run another
/// connection's equal submit beat to the unique index is not, nor a run
/// that changed since it was read.
async fn write_changes(
    conn: &mut PgConnection,
    origin: &str,
    fresh: &NewRows,
    changed: &[Held],
) -> Result<HashSet<uuid::Uuid>> {
    if fresh.ids.is_empty() && changed.is_empty() {
        return Ok(HashSet::new());
    }
    let mut updates = Updates::default();
    for held in changed {
        updates.push(held);
    }
    let sql = format!(
        "WITH inserted AS ( \
             INSERT INTO taskflow_runs (id, task_title, payload, status, attempt, max_attempts, executor, priority, \
                 not_before, timeout_ms, retry_delay_ms, created_at, unique_key, dedup) \
             SELECT id, title, payload::json, 'pending', attempt, max_attempts, executor, priority, not_before, \
                 timeout_ms, retry_delay_ms, created_at, sha256(k), dedup \
             FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::text[], \
                         $7::integer[], $8::bigint[], $9::bigint[], $10::bigint[], $11::bigint[], $12::bytea[], \
                         $13::boolean[]) \
                 AS u (id, title, payload, attempt, max_attempts, executor, priority, not_before, timeout_ms, \
                       retry_delay_ms, created_at, k, dedup) \
             ON CONFLICT DO NOTHING RETURNING id, status \
         ), updated AS ( \
             UPDATE taskflow_runs AS r SET status = u.status, attempt = u.attempt, not_before = u.not_before, \
                 started_at = u.started_at, finished_at = u.finished_at, result = u.result::json, \
                 error_kind = u.error_kind, error_message = u.error_message, worker_id = u.worker_id, \
                 lease_until = u.lease_until, attempts = u.attempts::json, progress_done = u.progress_done, \
                 progress_total = u.progress_total \
             FROM unnest($14::uuid[], $15::text[], $16::bigint[], $17::bigint[], $18::bigint[], $19::bigint[], \
                         $20::text[], $21::text[], $22::text[], $23::text[], $24::bigint[], $25::text[], \
                         $26::bigint[], $27::bigint[], $28::bigint[], $29::text[]) \
                 AS u (id, status, attempt, not_before, started_at, finished_at, result, error_kind, \
                       error_message, worker_id, lease_until, attempts, progress_done, progress_total, held_attempt, \
                       held_worker) \
             WHERE r.id = u.id AND r.id = ANY($14) AND r.status = $30 AND r.attempt = u.held_attempt \
                 AND r.worker_id = u.held_worker \
             RETURNING r.id, r.status \
         ), changed AS ( \
             SELECT id, status FROM inserted UNION ALL SELECT id, status FROM updated \
         ), announced AS ( \
             SELECT pg_notify($31, $32 || string_agg(' ' || id::text || ':' || status, '')) \
             FROM (SELECT id, status, (row_number() OVER () - 1) / {NOTIFY_CHUNK} AS chunk FROM changed) AS c \
             GROUP BY chunk \
         ) \
         SELECT id FROM changed WHERE (SELECT count(*) FROM announced) > 0"
    );
    let statement = query(&sql)
        .bind(&fresh.ids)
        .bind(&fresh.titles)
        .bind(&fresh.payloads)
        .bind(&fresh.attempts)
        .bind(&fresh.max_attempts)
        .bind(&fresh.executors)
        .bind(&fresh.priorities)
        .bind(&fresh.not_befores)
        .bind(&fresh.timeouts)
        .bind(&fresh.retry_delays)
        .bind(&fresh.created_at)
        .bind(&fresh.unique_keys)
        .bind(&fresh.dedup);
    let written = updates
        .columns
        .bind(statement)
        .bind(&updates.held_attempts)
        .bind(&updates.held_workers)
        // A parameter, not a constant: `status = 'running'` would tempt the
        // planner into the partial index of running runs and a join over
        // all of them, where the primary key finds each row.
        .bind(RunStatus::Running.as_str())
        .bind(CHANNEL)
        .bind(origin)
        .fetch_all(&mut *conn)
        .await
        .map_err(db("cannot write runs"))?;
    written.iter().map(|row| row.try_get(0)).collect::<Result<_, sqlx_core::Error>>().map_err(db("cannot write runs"))
}

/// The columns of the runs one batch creates.
#[derive(Default)]
struct NewRows {
    ids: Vec<uuid::Uuid>,
    titles: Vec<String>,
    payloads: Vec<String>,
    attempts: Vec<i64>,
    max_attempts: Vec<i64>,
    executors: Vec<&'static str>,
    priorities: Vec<i32>,
    not_befores: Vec<i64>,
    timeouts: Vec<Option<i64>>,
    retry_delays: Vec<i64>,
    created_at: Vec<i64>,
    unique_keys: Vec<Vec<u8>>,
    dedup: Vec<bool>,
}

impl NewRows {
    fn push(&mut self, run: &Run, unique_key: Vec<u8>, dedup: bool) {
        self.ids.push(run.id.as_uuid());
        self.titles.push(run.task_title.clone());
        self.payloads.push(run.payload.to_string());
        self.attempts.push(i64::from(run.attempt));
        self.max_attempts.push(i64::from(run.max_attempts));
        self.executors.push(run.executor.as_str());
        self.priorities.push(run.priority);
        self.not_befores.push(run.not_before.0);
        self.timeouts.push(run.timeout_ms.map(to_i64));
        self.retry_delays.push(to_i64(run.retry_delay_ms));
        self.created_at.push(run.created_at.0);
        self.unique_keys.push(unique_key);
        self.dedup.push(dedup);
    }
}

/// The columns a finish changes, and the holder it expects, of the runs one
/// batch finishes.
#[derive(Default)]
struct Updates<'a> {
    columns: ChangedColumns<'a>,
    held_attempts: Vec<i64>,
    held_workers: Vec<&'a str>,
}

impl<'a> Updates<'a> {
    fn push(&mut self, held: &'a Held) {
        self.columns.push(&held.run);
        self.held_attempts.push(i64::from(held.attempt));
        self.held_workers.push(&held.worker_id);
    }
}

#[cfg(test)]
mod tests;
