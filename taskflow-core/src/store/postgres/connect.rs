//! Connecting: URLs without their passwords, and the migrations.

use sqlx_core::Url;
use sqlx_core::connection::Connection;
use sqlx_core::executor::Executor;
use sqlx_core::query_scalar::query_scalar;
use sqlx_postgres::PgConnection;

use super::MIGRATION_LOCK;
use super::rows::{db, query};
use crate::store::{Error, Result};

/// The migrations, in order: version, name, SQL.
pub(super) const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "0001_runs", include_str!("../../../migrations/postgres/0001_runs.sql")),
    (2, "0002_task_limits", include_str!("../../../migrations/postgres/0002_task_limits.sql")),
    (3, "0003_attempts", include_str!("../../../migrations/postgres/0003_attempts.sql")),
    (4, "0004_progress", include_str!("../../../migrations/postgres/0004_progress.sql")),
    (5, "0005_workers", include_str!("../../../migrations/postgres/0005_workers.sql")),
    (6, "0006_refused_tasks", include_str!("../../../migrations/postgres/0006_refused_tasks.sql")),
];

/// Applies the migrations the database lacks, in one transaction, under an
/// advisory lock: a second server starting at the same time waits, then
/// finds them applied.
pub(super) async fn migrate(conn: &mut PgConnection) -> Result<()> {
    let mut tx = conn.begin().await.map_err(db("cannot begin the migration"))?;
    query("SELECT pg_advisory_xact_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *tx)
        .await
        .map_err(db("cannot take the migration lock"))?;
    let tracked: bool = query_scalar("SELECT to_regclass('taskflow_migrations') IS NOT NULL")
        .fetch_one(&mut *tx)
        .await
        .map_err(db("cannot look for the migrations table"))?;
    if !tracked {
        // Without arguments, `execute` uses the simple query protocol, which
        // takes several statements (`raw_sql` would too, but its future is
        // not `Send` for rustc).
        tx.execute(
            "CREATE TABLE taskflow_migrations (
                version    bigint      NOT NULL PRIMARY KEY,
                name       text        NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now()
            )",
        )
        .await
        .map_err(db("cannot create the migrations table"))?;
    }
    let version: i64 = query_scalar("SELECT coalesce(max(version), 0) FROM taskflow_migrations")
        .fetch_one(&mut *tx)
        .await
        .map_err(db("cannot read the schema version"))?;
    let known = MIGRATIONS.last().map_or(0, |(version, ..)| *version);
    if version > known {
        return Err(Error::other(format!(
            "its schema version {version} is newer than this build of taskflow knows ({known}); upgrade taskflow"
        )));
    }
    for (number, name, sql) in MIGRATIONS.iter().filter(|(number, ..)| *number > version) {
        tx.execute(*sql).await.map_err(db(format!("migration {name} failed")))?;
        query("INSERT INTO taskflow_migrations (version, name) VALUES ($1, $2)")
            .bind(number)
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(db(format!("cannot record migration {name}")))?;
    }
    tx.commit().await.map_err(db("cannot commit the migrations"))
}

/// `url` with its password (in the user part or a `password` parameter)
/// replaced by `***`, fit for messages and logs:
/// `postgres://user:***@host/db`.
pub fn redact_url(url: &str) -> String {
    // Not a URL, or one without an authority (`user:secret@host/db` parses
    // as the scheme `user` and an opaque path, so nothing marks the secret as
    // a password): show it only if it cannot hold a password.
    let parsed = Url::parse(url).ok().filter(|parsed| !parsed.cannot_be_a_base());
    let Some(mut parsed) = parsed else {
        return if url.contains('@') || url.contains("password") {
            "(a URL that does not parse, not shown because it may hold a password)".to_owned()
        } else {
            url.to_owned()
        };
    };
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some("***"));
    }
    if parsed.query_pairs().any(|(key, _)| key == "password") {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(key, value)| {
                let value = if key == "password" { "***".to_owned() } else { value.into_owned() };
                (key.into_owned(), value)
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    parsed.to_string()
}
