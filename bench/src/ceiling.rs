//! B1's ceiling on SQLite: what the database alone does with the statements
//! the store runs for one run, on the same schema with the same durability,
//! on one thread with nothing else to do. No engine, no channels, no JSON
//! parsing: an upper bound for any design that keeps the schema and the
//! three writes a run needs (its submit, its claim, its finish).

use std::path::Path;
use std::time::Instant;

use anyhow::{Context as _, Result};
use rusqlite::{Connection, OptionalExtension as _, TransactionBehavior, params};
use taskflow::run::Timestamp;
use taskflow::store::SqliteStore;
// The store's own statements, not copies: its submit's lookup and insert,
// the read of a finish, and the update its claims and finishes run, which
// sets every column a status change may touch (SQLite maintains every index
// whose columns are in the SET list).
use taskflow::store::sqlite_statements::{FIND_ACTIVE, INSERT_RUN, LOAD_RUN, SAVE_RUN};

/// Runs/s for `n` runs in transactions of `batch` runs, each run taking the
/// store's statements: the de-duplication lookup and the insert of its
/// submit, the update of its claim, the read and the update of its finish.
/// `indexes: false` drops the secondary indexes first, to show their share
/// (and skips the lookup, which would scan the table without its index).
pub fn runs_per_s(dir: &Path, n: usize, batch: usize, indexes: bool) -> Result<f64> {
    // The schema as the store makes it: its migrations, applied by opening.
    drop(SqliteStore::open_in(dir).context("creating the schema")?);
    let mut conn = Connection::open(dir.join("taskflow.db"))?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    if !indexes {
        conn.execute_batch(
            "DROP INDEX runs_claim; DROP INDEX runs_lease; DROP INDEX runs_finished; DROP INDEX runs_title; \
             DROP INDEX runs_unique_active;",
        )?;
    }
    let start = Instant::now();
    let mut done = 0;
    while done < n {
        let count = batch.min(n - done);
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut ids = Vec::with_capacity(count);
        {
            let mut lookup = tx.prepare_cached(FIND_ACTIVE)?;
            let mut insert = tx.prepare_cached(INSERT_RUN)?;
            let now = Timestamp::now().millis();
            for i in done..done + count {
                let id = uuid::Uuid::now_v7().to_string();
                let payload = format!("{{\"a\":{i},\"b\":0}}");
                let key = format!("add_numbers\u{0}{payload}");
                if indexes {
                    let found: Option<String> = lookup.query_row([&key], |row| row.get(0)).optional()?;
                    anyhow::ensure!(found.is_none(), "run {i} found a duplicate");
                }
                insert.execute(params![
                    id,
                    "add_numbers",
                    payload,
                    "pending",
                    1,
                    1,
                    "thread",
                    0,
                    now,
                    None::<i64>,
                    1000,
                    now,
                    None::<i64>,
                    None::<String>,
                    None::<i64>,
                    None::<String>,
                    key
                ])?;
                ids.push(id);
            }
            let mut save = tx.prepare_cached(SAVE_RUN)?;
            for id in &ids {
                save.execute(params![
                    id,
                    "running",
                    1,
                    now,
                    now,
                    None::<i64>,
                    None::<String>,
                    None::<String>,
                    None::<String>,
                    "w",
                    now + 30_000,
                    None::<String>,
                    None::<i64>,
                    None::<i64>
                ])?;
            }
            // What a finish stores of its attempt, as the store writes it.
            let attempts = format!(
                r#"[{{"number":1,"worker_id":"w","executor":"thread","started_at":{now},"finished_at":{now},"outcome":"completed"}}]"#
            );
            let mut read = tx.prepare_cached(LOAD_RUN)?;
            for id in &ids {
                read.query_row([id], |row| row.get::<_, String>(2))?;
                save.execute(params![
                    id,
                    "completed",
                    1,
                    now,
                    now,
                    now,
                    "3",
                    None::<String>,
                    None::<String>,
                    "w",
                    now + 30_000,
                    attempts,
                    None::<i64>,
                    None::<i64>
                ])?;
            }
        }
        tx.commit()?;
        done += count;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}
