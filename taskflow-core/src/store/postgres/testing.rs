//! Test databases (feature `testing`, for TaskFlow's own tests and
//! benchmarks; not a stable API): a fresh, empty database per test on a
//! shared server, named `tf_test_<UUIDv7>` so that left-overs of killed
//! runs are recognised by age and swept.

use std::time::Duration;

use sqlx_core::Url;
use sqlx_core::connection::Connection;
use sqlx_core::executor::Executor;
use sqlx_core::query_scalar::query_scalar;
use sqlx_postgres::PgConnection;

use super::PostgresStore;
use super::rows::db;
use crate::run::Timestamp;
use crate::store::{Error, Result, redact_url};

/// The name of every test database starts with this.
const TEST_DATABASE_PREFIX: &str = "tf_test_";
/// Test databases older than this are left-overs.
const TEST_DATABASE_LIFETIME: Duration = Duration::from_secs(3600);

/// When a test database named `tf_test_<UUIDv7>` was created (the UUID's
/// first 48 bits), in milliseconds since the epoch; `None` for other names.
pub(super) fn test_database_created(name: &str) -> Option<i64> {
    let id = name.strip_prefix(TEST_DATABASE_PREFIX)?;
    let id = uuid::Uuid::try_parse(id).ok().filter(|id| id.get_version_num() == 7)?;
    let bytes = id.as_bytes();
    Some(bytes[..6].iter().fold(0, |millis, byte| millis << 8 | i64::from(*byte)))
}

impl PostgresStore {
    /// Creates an empty database
    /// `tf_test_<UUIDv7>` on the server at `server` and returns its URL.
    /// Test databases older than an hour (left by test runs that were killed
    /// or did not drop theirs) are dropped on the way.
    pub async fn create_test_database(server: &str) -> Result<String> {
        let shown = redact_url(server);
        let failed = |e: sqlx_core::Error| db(format!("cannot create a test database on {shown}"))(e);
        let mut url = Url::parse(server).map_err(|e| failed(sqlx_core::Error::Configuration(e.into())))?;
        let mut admin = PgConnection::connect(server).await.map_err(failed)?;
        let existing: Vec<String> = query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'tf\\_test\\_%'")
            .fetch_all(&mut admin)
            .await
            .map_err(failed)?;
        let stale = Timestamp::now().millis() - i64::try_from(TEST_DATABASE_LIFETIME.as_millis()).unwrap_or(i64::MAX);
        for name in existing.iter().filter(|name| test_database_created(name).is_some_and(|at| at < stale)) {
            // Best effort: another test run may be sweeping too.
            let _ = admin.execute(&*format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
        }
        let name = format!("{TEST_DATABASE_PREFIX}{}", uuid::Uuid::now_v7().simple());
        admin.execute(&*format!("CREATE DATABASE {name}")).await.map_err(failed)?;
        let _ = admin.close().await;
        url.set_path(&name);
        Ok(url.to_string())
    }

    /// Drops the test database at `url`
    /// (made by [`create_test_database`](Self::create_test_database) on
    /// `server`), ending the connections still open to it.
    pub async fn drop_test_database(server: &str, url: &str) -> Result<()> {
        let name = Url::parse(url).ok().map(|url| url.path().trim_start_matches('/').to_owned()).unwrap_or_default();
        if test_database_created(&name).is_none() {
            return Err(Error::other(format!("{} is not a test database", redact_url(url))));
        }
        let failed = |e: sqlx_core::Error| db(format!("cannot drop the test database {name}"))(e);
        let mut admin = PgConnection::connect(server).await.map_err(failed)?;
        admin.execute(&*format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await.map_err(failed)?;
        let _ = admin.close().await;
        Ok(())
    }
}
