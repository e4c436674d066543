//! What only PostgreSQL has: connecting, migrations shared by servers,
//! change notifications, text PostgreSQL cannot hold. The contract
//! itself is tested in `store::conformance`.

use std::collections::HashSet;
use std::time::SystemTime;

use serde_json::{Value, json};
use sqlx_core::Url;
use sqlx_core::executor::Executor;
use sqlx_core::query_scalar::query_scalar;
use sqlx_core::row::Row;
use sqlx_postgres::{PgRow, PgTransaction};
use tokio::sync::broadcast::Receiver;
use tokio::task::JoinSet;

use super::super::conformance::pg::{with_database, with_store};
use super::changes::parse_changes;
use super::claim::claim_sql;
use super::reads::page_sql;
use super::rows::query;
use super::*;
use crate::run::ExecutorKind;
use crate::run::RunError;
use crate::run::RunStatus;
use crate::store::Outcome;

/// A connection of the test's own to its database, for what the store
/// does not do.
async fn raw(url: &str) -> PgConnection {
    PgConnection::connect(url).await.unwrap()
}

fn run_at(title: &str, payload: Value) -> NewRun {
    let mut new = NewRun::new(title, payload);
    new.not_before = Some(Timestamp(1_000));
    new
}

fn claim_request(worker: &str, now: i64) -> ClaimRequest {
    ClaimRequest {
        worker_id: worker.to_owned(),
        limit: 10,
        lease: Duration::from_secs(30),
        executors: vec![ExecutorKind::Thread],
        titles: vec!["t".to_owned()],
        task_limits: Vec::new(),
        lingering: Vec::new(),
        now: Timestamp(now),
    }
}

/// The next changed id, within five seconds.
async fn next_change(changes: &mut Receiver<Change>) -> Change {
    tokio::time::timeout(Duration::from_secs(5), changes.recv())
        .await
        .expect("a change is announced within five seconds")
        .unwrap()
}

/// Servers connect from spawned tasks: the future must be `Send`.
#[test]
fn connecting_can_be_spawned() {
    fn spawnable<T: Send + 'static>(_: T) {}
    spawnable(async { PostgresStore::connect("postgres://u@h/d").await });
}

#[test]
fn test_database_names_tell_their_age() {
    let before = Timestamp::now().millis();
    let name = format!("tf_test_{}", uuid::Uuid::now_v7().simple());
    let created = test_database_created(&name).unwrap();
    assert!((before..=Timestamp::now().millis()).contains(&created), "{created}");
    for other in ["postgres", "tf_test_", "tf_test_x", "app_01a20862a0457697be4004543eae0ff8"] {
        assert_eq!(test_database_created(other), None, "{other}");
    }
}

#[test]
fn urls_are_shown_without_passwords() {
    let cases = [
        ("postgres://user:secret@db.example:5432/runs", "postgres://user:***@db.example:5432/runs"),
        ("postgresql://user@host/db?sslmode=disable", "postgresql://user@host/db?sslmode=disable"),
        ("postgres://host/db?user=u&password=secret&x=1", "postgres://host/db?user=u&password=***&x=1"),
        ("postgres://u:p%40ss@host/db", "postgres://u:***@host/db"),
        ("not a url with secret@host", "(a URL that does not parse, not shown because it may hold a password)"),
        ("user:secret@host/db", "(a URL that does not parse, not shown because it may hold a password)"),
        ("postgres:user:secret@host/db", "(a URL that does not parse, not shown because it may hold a password)"),
        ("localhost:5432/db", "localhost:5432/db"),
        ("nonsense", "nonsense"),
    ];
    for (url, shown) in cases {
        assert_eq!(redact_url(url), shown, "{url}");
    }
}

/// What the real server answers is classified by its SQLSTATE: errors
/// a test cannot bring about on demand (a full disk, a damaged page, a
/// server shutting down) are raised by the server itself with their
/// SQLSTATE, through PL/pgSQL's `RAISE … USING ERRCODE`.
#[tokio::test]
async fn the_servers_errors_are_classified_by_sqlstate() {
    with_database(|url| async move {
        let mut conn = raw(&url).await;
        let cases = [
            ("40P01", DatabaseErrorKind::Deadlock),
            ("40001", DatabaseErrorKind::Deadlock),
            ("55P03", DatabaseErrorKind::Busy),
            ("57014", DatabaseErrorKind::Busy),
            ("53100", DatabaseErrorKind::Full),
            ("XX001", DatabaseErrorKind::Corrupt),
            ("XX002", DatabaseErrorKind::Corrupt),
            ("57P01", DatabaseErrorKind::Unavailable),
            ("57P03", DatabaseErrorKind::Unavailable),
            ("08006", DatabaseErrorKind::Unavailable),
            ("53300", DatabaseErrorKind::Unavailable),
            ("23505", DatabaseErrorKind::Conflict),
            ("22P02", DatabaseErrorKind::Other),
        ];
        for (code, kind) in cases {
            let sql = format!("DO $$ BEGIN RAISE EXCEPTION 'raised {code}' USING ERRCODE = '{code}'; END $$");
            let error = conn.execute(&*sql).await.map(drop).map_err(db("raising")).unwrap_err();
            assert_eq!(error.database_kind(), Some(kind), "{code}: {error}");
            assert_eq!(error.is_transient(), kind.is_transient(), "{code}");
            assert!(error.to_string().contains(&format!("raised {code}")), "the server's words: {error}");
        }
    })
    .await;
}

/// A real deadlock, a real lock wait given up, a real duplicate key.
#[tokio::test]
async fn deadlocks_locks_and_constraints_have_their_kinds() {
    with_database(|url| async move {
        let store = PostgresStore::connect(&url).await.unwrap();
        let a = store.submit(run_at("t", json!({"n": 1}))).await.unwrap().run.id;
        let b = store.submit(run_at("t", json!({"n": 2}))).await.unwrap().run.id;
        let lock = "SELECT 1 FROM taskflow_runs WHERE id = $1 FOR UPDATE";

        // Each transaction holds one row and asks for the other's.
        let pool = PgPoolOptions::new().max_connections(4).connect(&url).await.unwrap();
        let mut first = pool.begin().await.unwrap();
        let mut second = pool.begin().await.unwrap();
        query(lock).bind(a.as_uuid()).execute(&mut *first).await.unwrap();
        query(lock).bind(b.as_uuid()).execute(&mut *second).await.unwrap();
        let crossing = |mut tx: PgTransaction<'static>, id: RunId| {
            tokio::spawn(async move { query(lock).bind(id.as_uuid()).execute(&mut *tx).await.map(drop) })
        };
        let (crossed, other) = (crossing(first, b), crossing(second, a));
        // PostgreSQL aborts exactly one of the two (the other then gets its row).
        let victim = match (crossed.await.unwrap(), other.await.unwrap()) {
            (Err(error), Ok(())) | (Ok(()), Err(error)) => db("locking")(error),
            outcomes => panic!("expected one deadlock victim, got {outcomes:?}"),
        };
        assert_eq!(victim.database_kind(), Some(DatabaseErrorKind::Deadlock), "{victim}");
        assert!(victim.is_transient());

        // A row another transaction holds, not waited for.
        let mut holder = pool.begin().await.unwrap();
        query(lock).bind(a.as_uuid()).execute(&mut *holder).await.unwrap();
        let mut two = raw(&url).await;
        let busy = query("SELECT 1 FROM taskflow_runs WHERE id = $1 FOR UPDATE NOWAIT")
            .bind(a.as_uuid())
            .execute(&mut two)
            .await
            .map_err(db("locking"))
            .unwrap_err();
        assert_eq!(busy.database_kind(), Some(DatabaseErrorKind::Busy), "{busy}");
        holder.rollback().await.unwrap();

        // A second row with the same id.
        let duplicate = query("INSERT INTO taskflow_runs SELECT * FROM taskflow_runs WHERE id = $1")
            .bind(a.as_uuid())
            .execute(&mut two)
            .await
            .map_err(db("copying a run"))
            .unwrap_err();
        assert_eq!(duplicate.database_kind(), Some(DatabaseErrorKind::Conflict), "{duplicate}");
        assert!(!duplicate.is_transient());
    })
    .await;
}

/// A server that went away mid-session: the store's next call is
/// unavailable (worth another try), not an error of the caller.
#[tokio::test]
async fn a_terminated_connection_is_unavailable() {
    with_database(|url| async move {
        let mut victim = raw(&url).await;
        let pid: i32 = query_scalar("SELECT pg_backend_pid()").fetch_one(&mut victim).await.unwrap();
        query("SELECT pg_terminate_backend($1)").bind(pid).execute(&mut raw(&url).await).await.unwrap();
        let error = query("SELECT 1").execute(&mut victim).await.map_err(db("reading")).unwrap_err();
        assert_eq!(error.database_kind(), Some(DatabaseErrorKind::Unavailable), "{error}");
        assert!(error.is_transient());
    })
    .await;
}

#[tokio::test]
async fn connect_errors_name_the_url_without_the_password() {
    let refused = PostgresStore::connect("postgres://taskflow:hunter2@127.0.0.1:1/db").await.unwrap_err();
    assert_eq!(refused.database_kind(), Some(DatabaseErrorKind::Unavailable), "{refused}");
    let error = refused.to_string();
    assert!(error.contains("postgres://taskflow:***@127.0.0.1:1/db"), "{error}");
    assert!(error.contains("refused") && error.contains("check that the server is running"), "{error}");
    assert!(!error.contains("hunter2"), "{error}");

    let error = PostgresStore::connect("mysql://u:hunter2@host/db").await.unwrap_err().to_string();
    assert!(error.contains("not a PostgreSQL URL") && !error.contains("hunter2"), "{error}");
    let error = PostgresStore::connect("postgres://u:hunter2@host:port/db").await.unwrap_err().to_string();
    assert!(error.contains("the URL is invalid") && !error.contains("hunter2"), "{error}");

    with_database(|url| async move {
        let mut wrong = Url::parse(&url).unwrap();
        wrong.set_password(Some("hunter2")).unwrap();
        let error = PostgresStore::connect(wrong.as_str()).await.unwrap_err().to_string();
        assert!(error.contains("password authentication failed"), "{error}");
        assert!(error.contains(&redact_url(wrong.as_str())) && !error.contains("hunter2"), "{error}");
    })
    .await;
}

/// Servers starting at once apply the migrations once; a server
/// starting later finds them applied and the runs in place.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn servers_starting_at_once_migrate_once() {
    with_database(|url| async move {
        let mut connects = JoinSet::new();
        for _ in 0..8 {
            let url = url.clone();
            connects.spawn(async move { PostgresStore::connect(&url).await.unwrap() });
        }
        let stores = connects.join_all().await;
        let run = stores[0].submit(run_at("t", json!({}))).await.unwrap().run;
        drop(stores);

        let store = PostgresStore::connect(&url).await.unwrap();
        assert_eq!(store.get(run.id).await.unwrap(), Some(run));
        let applied: Vec<(i64, String)> = query("SELECT version, name FROM taskflow_migrations")
            .fetch_all(&mut raw(&url).await)
            .await
            .unwrap()
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
        assert_eq!(
            applied,
            [
                (1, "0001_runs".to_owned()),
                (2, "0002_task_limits".to_owned()),
                (3, "0003_attempts".to_owned()),
                (4, "0004_progress".to_owned()),
                (5, "0005_workers".to_owned()),
                (6, "0006_refused_tasks".to_owned())
            ]
        );
    })
    .await;
}

#[tokio::test]
async fn a_newer_schema_is_refused() {
    with_database(|url| async move {
        drop(PostgresStore::connect(&url).await.unwrap());
        query("INSERT INTO taskflow_migrations (version, name) VALUES (99, 'future')")
            .execute(&mut raw(&url).await)
            .await
            .unwrap();
        let error = PostgresStore::connect(&url).await.unwrap_err().to_string();
        assert!(error.contains("schema version 99") && error.contains(&redact_url(&url)), "{error}");
    })
    .await;
}

/// What one server changes, another hears of: every write that changes a
/// run, and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_reach_every_server() {
    with_database(|url| async move {
        let writer = PostgresStore::connect(&url).await.unwrap();
        let watcher = PostgresStore::connect(&url).await.unwrap();
        let mut changes = watcher.changes().expect("PostgreSQL announces changes");
        let mut own = writer.changes().unwrap();
        // What another server hears: the run, its new status, not its own.
        let heard = |id, status| Change { id, status, own: false };

        let mut new = run_at("t", json!({}));
        new.max_attempts = 3;
        let submitted = writer.submit(new).await.unwrap().run;
        assert_eq!(next_change(&mut changes).await, heard(submitted.id, Some(RunStatus::Pending)));
        assert_eq!(
            next_change(&mut own).await,
            Change { id: submitted.id, status: Some(RunStatus::Pending), own: true },
            "the writer hears its own changes, marked as its own"
        );
        // A de-duplicated submit changes nothing.
        assert!(!writer.submit(run_at("t", json!({}))).await.unwrap().created);

        let claimed = writer.claim(claim_request("w1", 2_000)).await.unwrap().remove(0);
        assert_eq!(next_change(&mut changes).await, heard(claimed.id, Some(RunStatus::Running)));
        // Lease renewals and log lines are not announced …
        writer.heartbeat("w1".to_owned(), vec![(claimed.id, 1).into()], Timestamp(40_000)).await.unwrap();
        writer.append_logs(vec![(claimed.id, Timestamp(2_500), Level::Info, "hi".to_owned())]).await.unwrap();
        // … nor stale reports, which change nothing.
        let stale = Report {
            id: claimed.id,
            attempt: 7,
            worker_id: "w1".to_owned(),
            outcome: Outcome::Released,
            now: Timestamp(3_000),
            progress: None,
        };
        assert!(writer.finish(stale.clone()).await.is_err());
        let released = writer.finish(Report { attempt: 1, ..stale }).await.unwrap();
        assert_eq!(next_change(&mut changes).await, heard(released.id, Some(RunStatus::Pending)));

        let claimed = writer.claim(claim_request("w2", 4_000)).await.unwrap().remove(0);
        assert_eq!(next_change(&mut changes).await, heard(claimed.id, Some(RunStatus::Running)));
        let rescued = writer.rescue_expired(Timestamp(60_000)).await.unwrap();
        assert_eq!(rescued.len(), 1);
        assert_eq!(next_change(&mut changes).await, heard(claimed.id, Some(RunStatus::Pending)));
        writer.cancel(claimed.id, Timestamp(61_000)).await.unwrap();
        assert_eq!(next_change(&mut changes).await, heard(claimed.id, Some(RunStatus::Cancelled)));
        writer.delete(claimed.id, false).await.unwrap();
        assert_eq!(next_change(&mut changes).await, heard(claimed.id, None));

        let many = (0..3).map(|i| run_at("many", json!({ "i": i })));
        let mut expected = HashSet::new();
        for new in many {
            expected.insert(writer.submit(new).await.unwrap().run.id);
        }
        let mut seen = HashSet::new();
        for _ in 0..3 {
            seen.insert(next_change(&mut changes).await.id);
        }
        assert_eq!(seen, expected);
        assert!(changes.try_recv().is_err(), "nothing else was announced");
    })
    .await;
}

/// A page of the run list and a claim read the indexes in order, with
/// no sort of the runs (they once sorted the text of every id, the whole
/// table for a page of fifty): `EXPLAIN` on 40,000 analysed runs.
#[tokio::test]
async fn lists_and_claims_read_indexes_in_order() {
    with_database(|url| async move {
        PostgresStore::connect(&url).await.unwrap();
        let mut conn = raw(&url).await;
        conn.execute(
            "INSERT INTO taskflow_runs (id, task_title, payload, status, attempt, max_attempts, executor, \
                 priority, not_before, retry_delay_ms, created_at, unique_key, dedup) \
             SELECT gen_random_uuid(), 't', '{}', CASE WHEN g % 3 = 0 THEN 'completed' ELSE 'pending' END, \
                 1, 1, 'thread', 0, g, 0, g, sha256(g::text::bytea), false \
             FROM generate_series(1, 40000) AS g; \
             ANALYZE taskflow_runs",
        )
        .await
        .unwrap();
        let plan = |rows: Vec<PgRow>| rows.iter().map(|row| row.get::<String, _>(0)).collect::<Vec<_>>().join("\n");

        let explain = format!("EXPLAIN {}", page_sql("", 0));
        let rows = query(&explain).bind(50_i64).bind(0_i64).fetch_all(&mut conn).await.unwrap();
        let page = plan(rows);
        let explain = format!("EXPLAIN {}", page_sql(" WHERE status = $1", 1));
        let rows = query(&explain).bind("completed").bind(50_i64).bind(0_i64).fetch_all(&mut conn).await.unwrap();
        let filtered = plan(rows);
        let explain = format!("EXPLAIN {}", claim_sql());
        let rows = query(&explain)
            .bind(1_000_000_i64)
            .bind(vec!["thread"])
            .bind(Vec::<String>::new())
            .bind(1024_i64)
            .bind(vec!["t"])
            .fetch_all(&mut conn)
            .await
            .unwrap();
        let claim = plan(rows);
        for plan in [&page, &filtered, &claim] {
            assert!(plan.contains("Index Scan"), "{plan}");
            assert!(!plan.contains("Sort"), "{plan}");
        }
    })
    .await;
}

/// Payloads that are not ours (another program on the channel, an older
/// TaskFlow) are refused whole; ours split into one change per run.
#[test]
fn notification_payloads_parse() {
    let (a, b) = (RunId::new(), RunId::new());
    let changes = parse_changes(&format!("me {a}:running {b}:deleted"), "me").unwrap();
    assert_eq!(
        changes,
        [Change { id: a, status: Some(RunStatus::Running), own: true }, Change { id: b, status: None, own: true }]
    );
    assert!(!parse_changes(&format!("you {a}:failed"), "me").unwrap()[0].own);
    for bad in [a.to_string(), format!("me {a}"), format!("me {a}:sleeping"), "me nope:running".to_owned()] {
        assert_eq!(parse_changes(&bad, "me"), None, "{bad}");
    }
}

/// When the listening connection is killed, the store listens again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_reconnects() {
    with_database(|url| async move {
        let store = PostgresStore::connect(&url).await.unwrap();
        let mut changes = store.changes().unwrap();
        let killed: Vec<bool> = query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND query LIKE 'LISTEN%'",
        )
        .fetch_all(&mut raw(&url).await)
        .await
        .unwrap();
        assert_eq!(killed, [true]);

        // Changes made before it listens again are missed: keep changing
        // runs until one is heard.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let mut submitted = HashSet::new();
        for i in 0.. {
            assert!(tokio::time::Instant::now() < deadline, "no change heard after the reconnect");
            submitted.insert(store.submit(run_at("t", json!({ "i": i }))).await.unwrap().run.id);
            match tokio::time::timeout(Duration::from_millis(200), changes.recv()).await {
                Ok(Ok(change)) => {
                    assert!(submitted.contains(&change.id));
                    break;
                }
                Ok(Err(error)) => panic!("the changes channel failed: {error}"),
                Err(_) => {}
            }
        }
    })
    .await;
}

#[tokio::test]
async fn corrupt_rows_are_errors() {
    with_database(|url| async move {
        let store = PostgresStore::connect(&url).await.unwrap();
        let run = store.submit(run_at("t", json!({}))).await.unwrap().run;
        query("UPDATE taskflow_runs SET executor = 'abacus' WHERE id = $1")
            .bind(run.id.as_uuid())
            .execute(&mut raw(&url).await)
            .await
            .unwrap();
        match store.get(run.id).await {
            Err(Error::Database(error)) => {
                assert!(error.to_string().contains("executor"), "{error}");
                assert_eq!((error.kind(), error.run()), (DatabaseErrorKind::Corrupt, Some(run.id)), "{error}");
            }
            other => panic!("expected a database error, got {other:?}"),
        }
        let again = store.cancel(run.id, Timestamp(2_000)).await.unwrap_err();
        assert_eq!(again.database_kind(), Some(DatabaseErrorKind::Corrupt), "{again}");
        assert!(store.submit(run_at("t", json!({"other": true}))).await.unwrap().created);
    })
    .await;
}

/// `text` cannot hold NUL: in free text it becomes U+FFFD.
#[tokio::test]
async fn nul_in_free_text_is_replaced() {
    with_store(|store| async move {
        let run = store.submit(run_at("t", json!({}))).await.unwrap().run;
        let claimed = store.claim(claim_request("w1", 2_000)).await.unwrap().remove(0);
        let stored = store.append_logs(vec![(run.id, Timestamp(1), Level::Info, "a\0b".to_owned())]).await.unwrap();
        assert_eq!(stored[0].message, "a\u{FFFD}b", "`append_logs` answers what it stored");
        assert_eq!(store.logs(run.id, 0, 10).await.unwrap()[0].message, "a\u{FFFD}b");
        let error = RunError { kind: "failed".to_owned(), message: "bad\0byte".to_owned() };
        let outcome = Outcome::Failed { error, retry_at: None };
        let report =
            Report { id: run.id, attempt: 1, worker_id: "w1".to_owned(), outcome, now: Timestamp(3), progress: None };
        let failed = store.finish(report).await.unwrap();
        assert_eq!(claimed.id, run.id);
        assert_eq!(store.get(run.id).await.unwrap().unwrap().error.unwrap().message, "bad\u{FFFD}byte");
        assert_eq!(failed.error.unwrap().message, "bad\u{FFFD}byte", "`finish` answers what it stored");
    })
    .await;
}

/// Leases go by the database's clock, whatever the servers' clocks say:
/// a server whose clock runs a minute ahead rescues no live run of
/// another, and a server whose clock runs a minute behind stamps leases
/// that do not end at once. Each server gives times by its own clock, as
/// an engine does; the runs still expire when their lease has passed.
#[tokio::test]
async fn servers_whose_clocks_disagree_agree_on_leases() {
    with_database(|url| async move {
        const LEASE: Duration = Duration::from_secs(30);
        let minute = Duration::from_secs(60);
        let on_time = PostgresStore::connect(&url).await.unwrap();
        let ahead = PostgresStore::connect_with_clock(&url, move || SystemTime::now() + minute).await.unwrap();
        let behind = PostgresStore::connect_with_clock(&url, move || SystemTime::now() - minute).await.unwrap();
        let now = |by: &str| match by {
            "ahead" => Timestamp::from(SystemTime::now() + minute),
            "behind" => Timestamp::from(SystemTime::now() - minute),
            _ => Timestamp::now(),
        };
        let request = |worker: &str| ClaimRequest { limit: 1, now: now(worker), ..claim_request(worker, 0) };

        // Claimed on time (a 30 s lease), then rescued by the server ahead.
        let live = on_time.submit(run_at("t", json!({"live": 1}))).await.unwrap().run;
        assert_eq!(on_time.claim(request("on time")).await.unwrap()[0].id, live.id);
        let rescued = ahead.rescue_expired(now("ahead")).await.unwrap();
        assert!(rescued.is_empty(), "a live run was rescued by a server whose clock runs ahead: {rescued:?}");

        // Claimed and renewed by the server behind, rescued on time.
        let behind_run = behind.submit(run_at("t", json!({"behind": 1}))).await.unwrap().run;
        assert_eq!(behind.claim(request("behind")).await.unwrap()[0].id, behind_run.id);
        let lost = behind.heartbeat("behind".into(), vec![(behind_run.id, 1).into()], now("behind").plus(LEASE)).await;
        assert!(lost.unwrap().is_empty());
        let rescued = on_time.rescue_expired(now("on time")).await.unwrap();
        assert!(rescued.is_empty(), "a live run of a server whose clock runs behind was rescued: {rescued:?}");

        // The leases still end, 30 s on.
        let later = ahead.rescue_expired(now("ahead").plus(LEASE + Duration::from_secs(1))).await.unwrap();
        let rescued: HashSet<RunId> = later.iter().map(|run| run.id).collect();
        assert_eq!(rescued, HashSet::from([live.id, behind_run.id]));
    })
    .await;
}
