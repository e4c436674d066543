//! PostgreSQL test databases.

use std::future::Future;
use std::io::Write;
use std::sync::Arc;

use tokio::sync::Semaphore;

use super::super::{PostgresStore, Store};

/// The variable naming the server the tests may create databases on.
const SERVER: &str = "TASKFLOW_TEST_DATABASE_URL";

/// At most this many tests use the server at once: each store pools up
/// to eleven connections, and a machine with many cores runs many tests
/// at once (`scripts/postgres` allows 300 connections).
static AT_ONCE: Semaphore = Semaphore::const_new(8);

/// Runs `case` on a store over a fresh database, then drops the
/// database, also when the case panics.
pub(crate) async fn with_store<F, Fut>(case: F)
where
    F: FnOnce(Arc<dyn Store>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    with_database(|url| async move {
        let store = PostgresStore::connect(&url).await.expect("the test database accepts the store");
        // The case owns the store: it is gone when the case ends.
        case(Arc::new(store)).await;
    })
    .await;
}

/// Runs `case` with the URL of a fresh database, then drops the
/// database, also when the case panics. Says `SKIPPED` and returns when
/// `TASKFLOW_TEST_DATABASE_URL` is not set.
pub(crate) async fn with_database<F, Fut>(case: F)
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(server) = std::env::var(SERVER).ok().filter(|url| !url.is_empty()) else {
        assert!(
            std::env::var_os("TASKFLOW_REQUIRE_POSTGRES").is_none(),
            "{SERVER} is not set, but TASKFLOW_REQUIRE_POSTGRES says PostgreSQL tests must run"
        );
        // Straight to stdout, past the test harness's capture, so the
        // skip shows (the one print in the test code).
        let _ = writeln!(std::io::stdout(), "SKIPPED: {SERVER} is not set");
        return;
    };
    let _turn = AT_ONCE.acquire().await.expect("the semaphore is never closed");
    let url = PostgresStore::create_test_database(&server).await.unwrap();
    let outcome = tokio::spawn(case(url.clone())).await;
    // Best effort: what is left is swept by a later test run.
    let _ = PostgresStore::drop_test_database(&server, &url).await;
    if let Err(error) = outcome {
        std::panic::resume_unwind(error.into_panic());
    }
}
