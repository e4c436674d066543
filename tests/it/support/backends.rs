//! The stores the end-to-end suites run on: a fresh SQLite file, and a fresh
//! PostgreSQL database on the server `./scripts/test` starts
//! (`TASKFLOW_TEST_DATABASE_URL`). `on_every_backend!` runs each case on both.

use std::sync::Arc;

use taskflow::store::{PostgresStore, Store};

/// A store backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `SqliteStore` on a temporary file.
    Sqlite,
    /// `PostgresStore` on a fresh database.
    Postgres,
}

/// A store on a new, empty PostgreSQL database, or `None` after printing
/// `SKIPPED` when no server is configured (the test command always
/// configures one).
pub async fn fresh_postgres() -> Option<Arc<dyn Store>> {
    let server = postgres_server()?;
    let url = PostgresStore::create_test_database(&server).await.expect("a fresh test database");
    Some(Arc::new(PostgresStore::connect(&url).await.expect("the test database opens")))
}

/// The PostgreSQL server of the test command, or `None` after a loud
/// `SKIPPED`. Under `./scripts/test` (which sets `TASKFLOW_REQUIRE_POSTGRES`)
/// a missing server fails the test instead: CI never passes by skipping.
pub fn postgres_server() -> Option<String> {
    match std::env::var("TASKFLOW_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("TASKFLOW_REQUIRE_POSTGRES").is_some() => {
            panic!(
                "TASKFLOW_TEST_DATABASE_URL is not set, but TASKFLOW_REQUIRE_POSTGRES says PostgreSQL tests must run"
            )
        }
        _ => {
            println!("SKIPPED: TASKFLOW_TEST_DATABASE_URL is not set (./scripts/test starts a server and sets it)");
            None
        }
    }
}

/// Starts (installing it if needed) a PostgreSQL server of a test's own on
/// `port`, with `scripts/postgres` and its `args` (`--restart-immediate`
/// restarts it as a crash would), and returns its admin URL: a test that
/// restarts or breaks its server disturbs no other. Blocking.
pub fn private_postgres(port: &str, args: &[&str]) -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/postgres");
    let output = std::process::Command::new(path).args(args).env("TASKFLOW_PG_PORT", port).output().unwrap();
    assert!(output.status.success(), "scripts/postgres {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// Expands `async fn case(backend: Backend)`s into one `#[tokio::test]` per
/// backend, in modules `sqlite` and `postgres`.
macro_rules! on_every_backend {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case($crate::support::backends::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case($crate::support::backends::Backend::Postgres).await
                }
            )*
        }
    };
}
pub(crate) use on_every_backend;
