//! The SQLite store's own tests: opening, migrations, error kinds and the
//! group-commit writer. (What every store does is in the conformance suite.)

use std::collections::HashSet;

use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::task::JoinSet;

use super::open::MIGRATIONS;
use super::writer::{Op, run_batch};
use super::writes::submit;
use super::*;
use crate::run::ExecutorKind;
use crate::run::RunStatus;

fn fresh() -> (TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open_in(dir.path()).unwrap();
    (dir, store)
}

/// A run that may be claimed from `Timestamp(1_000)` on.
fn new_run(title: &str, payload: Value) -> NewRun {
    let mut new = NewRun::new(title, payload);
    new.not_before = Some(Timestamp(1_000));
    new
}

async fn submit_new(store: &SqliteStore, new: NewRun) -> Run {
    let submitted = store.submit(new).await.unwrap();
    assert!(submitted.created);
    submitted.run
}

async fn get(store: &SqliteStore, id: RunId) -> Run {
    store.get(id).await.unwrap().unwrap()
}

/// The file is where it was asked for, and its runs survive a reopen.
/// (How a run round-trips is in the conformance suite.)
/// A submit claims its run only when no other claimer declared a limit for
/// its task: the limit is counted by claims, not by a submit's shortcut.
#[tokio::test]
async fn a_submit_does_not_claim_a_task_another_claimer_limits() {
    let (_dir, store) = fresh();
    let claiming = |n: u32| {
        let mut new = NewRun::new("t", json!({ "n": n }));
        new.claim = Some(crate::store::SubmitClaim { worker_id: "local".to_owned(), lease: Duration::from_secs(30) });
        new
    };
    let run = store.submit(claiming(1)).await.unwrap().run;
    assert_eq!(run.status, RunStatus::Running, "nobody limits `t`: claimed at its submit");
    let declaring = ClaimRequest {
        worker_id: "strict".to_owned(),
        limit: 1,
        lease: Duration::from_secs(30),
        executors: vec![ExecutorKind::Thread],
        titles: vec!["t".to_owned()],
        task_limits: vec![("t".to_owned(), 1)],
        lingering: Vec::new(),
        now: Timestamp::now(),
    };
    assert!(store.claim(declaring).await.unwrap().is_empty(), "`t` is full");
    let run = store.submit(claiming(2)).await.unwrap().run;
    assert_eq!((run.status, run.worker_id, run.started_at), (RunStatus::Pending, None, None));
}

#[tokio::test]
async fn reopen_keeps_the_runs() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("nested").join("data");
    let store = SqliteStore::open_in(&data_dir).unwrap();
    assert_eq!(store.path(), data_dir.join("taskflow.db"));

    let mut new = NewRun::new("add", json!({"a": 1, "b": [true, null, "x"]}));
    new.max_attempts = 3;
    new.executor = ExecutorKind::Process;
    new.idempotency_key = Some("key-1".to_owned());
    let run = submit_new(&store, new).await;
    let plain = submit_new(&store, NewRun::new("add", json!({}))).await;

    drop(store);
    let store = SqliteStore::open(data_dir.join("taskflow.db")).unwrap();
    assert_eq!(get(&store, run.id).await, run);
    assert_eq!(get(&store, plain.id).await, plain);
}

#[tokio::test]
async fn open_reports_the_failing_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "not a directory").unwrap();
    let error = SqliteStore::open_in(file.join("sub")).unwrap_err().to_string();
    assert!(error.contains("a-file"), "{error}");
    let error = SqliteStore::open(dir.path().join("missing").join("taskflow.db")).unwrap_err().to_string();
    assert!(error.contains("missing"), "{error}");
}

#[tokio::test]
async fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(SqliteStore::open_in(dir.path()).unwrap());
    let path = dir.path().join("taskflow.db");
    Connection::open(&path).unwrap().pragma_update(None, "user_version", 99).unwrap();
    let error = SqliteStore::open(&path).unwrap_err().to_string();
    assert!(error.contains("schema version 99"), "{error}");
}

/// A database of the first schema version is upgraded in place: its
/// runs and log lines survive the table's rebuild (0002), the logs
/// still belong to their runs, and the status is still checked.
#[tokio::test]
async fn an_older_schema_is_migrated_with_its_runs_and_logs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("taskflow.db");
    let version_1 = Connection::open(&path).unwrap();
    version_1.execute_batch(MIGRATIONS[0].1).unwrap();
    version_1.pragma_update(None, "user_version", 1).unwrap();
    let id = RunId::new();
    version_1
        .execute(
            "INSERT INTO runs (id, task_title, payload, status, attempt, max_attempts, executor, priority, \
             not_before, retry_delay_ms, created_at, started_at, finished_at, result, unique_key, log_count) \
             VALUES (?1, 'add', '{\"a\":1}', 'completed', 1, 1, 'thread', 0, 5, 1000, 5, 6, 7, '2', 'k', 1)",
            [id.to_string()],
        )
        .unwrap();
    version_1
        .execute(
            "INSERT INTO run_logs (run_id, seq, at, level, message) VALUES (?1, 1, 6, 'info', 'hi')",
            [id.to_string()],
        )
        .unwrap();
    drop(version_1);

    let store = SqliteStore::open(&path).unwrap();
    let run = get(&store, id).await;
    assert_eq!((run.status, run.payload, run.result), (RunStatus::Completed, json!({"a": 1}), Some(json!(2))));
    let lines = store.logs(id, 0, 10).await.unwrap();
    assert_eq!(lines.iter().map(|line| line.message.as_str()).collect::<Vec<_>>(), ["hi"]);
    assert_eq!(store.integrity_check().await.unwrap(), "ok");
    drop(store);

    let raw = Connection::open(&path).unwrap();
    let version: i64 = raw.pragma_query_value(None, "user_version", |row| row.get(0)).unwrap();
    assert_eq!(version, MIGRATIONS.len() as i64);
    // The logs still refer to their run: deleting it takes them along.
    raw.pragma_update(None, "foreign_keys", "ON").unwrap();
    let bogus = raw.execute("UPDATE runs SET status = 'bogus' WHERE id = ?1", [id.to_string()]);
    assert!(bogus.unwrap_err().to_string().contains("CHECK constraint failed"));
    raw.execute("DELETE FROM runs WHERE id = ?1", [id.to_string()]).unwrap();
    let left: i64 = raw.query_row("SELECT COUNT(*) FROM run_logs", [], |row| row.get(0)).unwrap();
    assert_eq!(left, 0);
}

/// Each kind from what SQLite itself answers, on real files. SQLite
/// has no deadlock to report: a writer waiting for another's lock is
/// told `SQLITE_BUSY`, which is [`DatabaseErrorKind::Busy`].
#[tokio::test]
async fn sqlites_errors_have_their_kinds() {
    let (dir, store) = fresh();
    let path = dir.path().join("taskflow.db");

    // Another connection holds the write lock and this one does not wait.
    let holder = Connection::open(&path).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    let waiter = Connection::open(&path).unwrap();
    waiter.busy_timeout(Duration::ZERO).unwrap();
    let busy = waiter.execute_batch("BEGIN IMMEDIATE").map_err(db("beginning")).unwrap_err();
    assert_eq!(busy.database_kind(), Some(DatabaseErrorKind::Busy), "{busy}");
    assert!(busy.is_transient());
    holder.execute_batch("ROLLBACK").unwrap();

    // No room left: a cap of the pages it holds, and a payload that needs more.
    let pages = store.page_count().await.unwrap();
    store.set_max_page_count(pages).await.unwrap();
    let big = json!({"text": "x".repeat(64 * 1024)});
    let full = store.submit(new_run("t", big)).await.unwrap_err();
    assert_eq!(full.database_kind(), Some(DatabaseErrorKind::Full), "{full}");
    assert!(!full.is_transient(), "a full disk stays full until space is freed");
    drop(store);

    // A file that is not a database.
    let garbage = dir.path().join("garbage.db");
    std::fs::write(&garbage, vec![0x5a; 8192]).unwrap();
    let corrupt = SqliteStore::open(&garbage).unwrap_err();
    assert_eq!(corrupt.database_kind(), Some(DatabaseErrorKind::Corrupt), "{corrupt}");
    assert!(corrupt.to_string().contains("garbage.db"), "names the file: {corrupt}");

    // A file that cannot be opened: its directory is a file.
    let unopenable = SqliteStore::open(garbage.join("taskflow.db")).unwrap_err();
    assert_eq!(unopenable.database_kind(), Some(DatabaseErrorKind::Unavailable), "{unopenable}");

    // A statement the schema refuses, and one that makes no sense.
    let conn = Connection::open(&path).unwrap();
    let refused = conn.execute("INSERT INTO runs (id) VALUES ('x')", []).map_err(db("inserting")).unwrap_err();
    assert_eq!(refused.database_kind(), Some(DatabaseErrorKind::Conflict), "{refused}");
    let nonsense = conn.execute("SELEKT 1", []).map_err(db("selecting")).unwrap_err();
    assert_eq!(nonsense.database_kind(), Some(DatabaseErrorKind::Other), "{nonsense}");
    assert!(!refused.is_transient() && !nonsense.is_transient());
}

#[tokio::test]
async fn corrupt_rows_are_errors() {
    let (dir, store) = fresh();
    let run = submit_new(&store, new_run("t", json!({}))).await;
    let raw = Connection::open(dir.path().join("taskflow.db")).unwrap();
    raw.execute("UPDATE runs SET payload = '{not json' WHERE id = ?1", [run.id.to_string()]).unwrap();
    drop(raw);
    match store.get(run.id).await {
        Err(Error::Database(error)) => {
            assert!(error.to_string().contains("payload"), "{error}");
            assert_eq!((error.kind(), error.run()), (DatabaseErrorKind::Corrupt, Some(run.id)), "{error}");
        }
        other => panic!("expected a database error, got {other:?}"),
    }
    // The writer reports it too, and keeps going; trying again cannot help.
    let again = store.cancel(run.id, Timestamp(2_000)).await.unwrap_err();
    assert_eq!(again.database_kind(), Some(DatabaseErrorKind::Corrupt), "{again}");
    assert!(!again.is_transient());
    submit_new(&store, new_run("t", json!({"other": true}))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn group_commit_acknowledges_every_submit() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open_in(dir.path()).unwrap();
    let mut submits = JoinSet::new();
    for i in 0..500 {
        let store = store.clone();
        submits.spawn(async move { store.submit(new_run("t", json!({ "i": i }))).await });
    }
    let mut acknowledged = HashSet::new();
    for submitted in submits.join_all().await {
        let submitted = submitted.unwrap();
        assert!(submitted.created);
        acknowledged.insert(submitted.run.id);
    }
    assert_eq!(acknowledged.len(), 500);
    drop(store);

    let store = SqliteStore::open_in(dir.path()).unwrap();
    let filter = RunFilter { limit: Some(1000), ..RunFilter::default() };
    let page = store.list(filter).await.unwrap();
    assert_eq!(page.total, 500);
    assert_eq!(page.items.into_iter().map(|r| r.id).collect::<HashSet<_>>(), acknowledged);
}

/// A queued command and where its answer arrives.
fn job<T: Send + 'static>(
    op: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
) -> (Box<dyn Command>, oneshot::Receiver<Result<T>>) {
    let (reply, answer) = oneshot::channel();
    (Box::new(Job { op: Some(Box::new(op)), isolation: Isolation::Savepoint, outcome: None, reply }), answer)
}

/// The writer's connection on a fresh file, without the writer thread.
fn writer_connection(dir: &TempDir) -> Connection {
    let mut conn = Connection::open(dir.path().join("taskflow.db")).unwrap();
    configure_writer(&conn).unwrap();
    migrate(&mut conn).unwrap();
    conn
}

fn count_runs(conn: &Connection) -> i64 {
    conn.query_row("SELECT COUNT(*) FROM runs", [], |row| row.get(0)).unwrap()
}

#[tokio::test]
async fn a_failing_command_rolls_back_only_itself() {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = writer_connection(&dir);
    let (first, first_answer) = job(|conn| submit(conn, new_run("a", json!({})), Timestamp(1)));
    let (missing, missing_answer) = job(|conn| cancel(conn, RunId::new(), Timestamp(1)));
    // Writes, then fails: its write must not survive.
    let (partial, partial_answer) = job(|conn| {
        submit(conn, new_run("partial", json!({})), Timestamp(1))?;
        Err::<(), _>(Error::Closed)
    });
    let (panics, panics_answer) = job(|conn| -> Result<()> {
        submit(conn, new_run("panics", json!({})), Timestamp(1))?;
        panic!("a bug in a command");
    });
    let (last, last_answer) = job(|conn| submit(conn, new_run("b", json!({})), Timestamp(1)));
    let mut batch = vec![first, missing, partial, panics, last];

    let failure = run_batch(&mut conn, &mut batch).err();
    assert!(failure.is_none(), "{failure:?}");
    for command in batch {
        command.reply(None);
    }
    assert!(first_answer.await.unwrap().unwrap().created);
    assert!(matches!(missing_answer.await.unwrap(), Err(Error::NotFound(_))));
    assert!(matches!(partial_answer.await.unwrap(), Err(Error::Closed)));
    assert!(matches!(panics_answer.await.unwrap(), Err(Error::Database(m)) if m.to_string().contains("panicked")));
    assert!(last_answer.await.unwrap().unwrap().created);
    assert_eq!(count_runs(&conn), 2);
}

/// A command without a savepoint that fails in its (only) write leaves
/// the batch and the other commands as they were.
#[tokio::test]
async fn a_failing_last_statement_undoes_itself() {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = writer_connection(&dir);
    let (first, first_answer) = job(|conn| submit(conn, new_run("a", json!({})), Timestamp(1)));
    let (reply, failing_answer) = oneshot::channel();
    let failing: Box<dyn Command> = Box::new(Job {
        op: Some(Box::new(|conn: &Connection| {
            // NOT NULL fails the statement.
            conn.execute("INSERT INTO runs (id) VALUES ('x')", []).map(drop).map_err(db("test"))
        }) as Op<()>),
        isolation: Isolation::LastStatement,
        outcome: None,
        reply,
    });
    let (last, last_answer) = job(|conn| submit(conn, new_run("b", json!({})), Timestamp(1)));
    let mut batch = vec![first, failing, last];
    let failure = run_batch(&mut conn, &mut batch).err();
    assert!(failure.is_none(), "{failure:?}");
    for command in batch {
        command.reply(None);
    }
    assert!(first_answer.await.unwrap().unwrap().created);
    let refused = failing_answer.await.unwrap().unwrap_err();
    assert_eq!(refused.database_kind(), Some(DatabaseErrorKind::Conflict), "a NOT NULL constraint: {refused}");
    assert!(last_answer.await.unwrap().unwrap().created);
    assert_eq!(count_runs(&conn), 2);
}

#[tokio::test]
async fn a_failed_commit_fails_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = writer_connection(&dir);
    let (good, good_answer) = job(|conn| submit(conn, new_run("a", json!({})), Timestamp(1)));
    // A deferred foreign key violation passes its savepoint and fails the COMMIT.
    let (bad, bad_answer) = job(|conn| {
        conn.execute_batch(
            "PRAGMA defer_foreign_keys = ON; \
             INSERT INTO run_logs (run_id, seq, at, level, message) VALUES ('nope', 1, 0, 'info', 'x');",
        )
        .map_err(db("test"))
    });
    let mut batch = vec![good, bad];
    let failure = run_batch(&mut conn, &mut batch).err();
    assert!(failure.as_ref().is_some_and(|e| e.to_string().contains("commit")), "{failure:?}");
    for command in batch {
        command.reply(failure.as_ref());
    }
    let good = good_answer.await.unwrap().unwrap_err();
    assert!(good.to_string().contains("commit"), "{good}");
    assert_eq!(good.database_kind(), Some(DatabaseErrorKind::Conflict), "a foreign key: {good}");
    assert!(matches!(bad_answer.await.unwrap(), Err(Error::Database(_))));
    assert_eq!(count_runs(&conn), 0);

    // The connection is usable again.
    let (again, again_answer) = job(|conn| submit(conn, new_run("a", json!({})), Timestamp(1)));
    let mut batch = vec![again];
    assert!(run_batch(&mut conn, &mut batch).is_ok());
    batch.pop().unwrap().reply(None);
    assert!(again_answer.await.unwrap().unwrap().created);
    assert_eq!(count_runs(&conn), 1);
}

#[tokio::test]
async fn a_stopped_writer_means_closed() {
    let dir = tempfile::tempdir().unwrap();
    let (sender, receiver) = mpsc::channel();
    drop(receiver);
    let store = SqliteStore {
        inner: Arc::new(Inner {
            path: dir.path().join("taskflow.db"),
            writer: Some(sender),
            thread: None,
            readers: Mutex::new(Vec::new()),
        }),
    };
    assert!(matches!(store.submit(new_run("t", json!({}))).await, Err(Error::Closed)));
    assert!(matches!(store.rescue_expired(Timestamp(1)).await, Err(Error::Closed)));
}
