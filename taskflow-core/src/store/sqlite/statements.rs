//! The statements the store runs for every run, re-exported with the
//! `testing` feature as `store::sqlite_statements` so that the benchmark's
//! ceiling (`bench/src/ceiling.rs`) measures exactly these and cannot drift
//! from them. Not part of the API.

/// A de-duplicated submit's lookup of the active run with its key.
pub const FIND_ACTIVE: &str = concat!(
    "SELECT ",
    run_columns!(),
    " FROM runs WHERE unique_key = ?1 AND status IN ('pending', 'running') ORDER BY id LIMIT 1"
);

/// One run by id (a finish and a cancel read the run they change).
pub const LOAD_RUN: &str = concat!("SELECT ", run_columns!(), " FROM runs WHERE id = ?1");

/// A submit's insert (17 parameters, in the order the store binds them).
pub const INSERT_RUN: &str = "INSERT INTO runs (id, task_title, payload, status, attempt, max_attempts, executor, \
     priority, not_before, timeout_ms, retry_delay_ms, created_at, started_at, worker_id, lease_until, \
     idempotency_key, unique_key) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)";

/// Every status change (claim, finish, cancel, rescue): writes everything
/// it may touch.
pub const SAVE_RUN: &str = "UPDATE runs SET status = ?2, attempt = ?3, not_before = ?4, started_at = ?5, \
     finished_at = ?6, result = ?7, error_kind = ?8, error_message = ?9, worker_id = ?10, lease_until = ?11, \
     attempts = ?12, progress_done = ?13, progress_total = ?14 WHERE id = ?1";
