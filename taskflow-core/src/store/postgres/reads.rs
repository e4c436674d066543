//! The reads: one run, a page of runs, a run's log lines.

use sqlx_core::row::Row;
use sqlx_postgres::{PgConnection, PgPool, PgRow};

use super::RUN_COLUMNS;
use super::rows::{db, query, read_run};
use crate::run::{Run, RunId};
use crate::store::row::{log_line, to_i64};
use crate::store::{DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT, MAX_LOG_LIMIT, Page, Result, RunFilter, StoredLogLine};

/// One run; `lock` is appended to the query (`FOR UPDATE` in a write).
pub(super) async fn load(conn: &mut PgConnection, id: RunId, lock: &str) -> Result<Option<Run>> {
    let sql = format!("SELECT {RUN_COLUMNS} FROM taskflow_runs WHERE id = $1 {lock}");
    let row = query(&sql).bind(id.as_uuid()).fetch_optional(conn).await.map_err(db("cannot read a run"))?;
    row.as_ref().map(read_run).transpose()
}

/// A page of `list`: the runs `filter_sql` (with `args` arguments) keeps,
/// newest first; the limit and offset follow the arguments.
pub(super) fn page_sql(filter_sql: &str, args: usize) -> String {
    format!(
        "SELECT {RUN_COLUMNS} FROM taskflow_runs{filter_sql} ORDER BY taskflow_runs.id DESC LIMIT ${} OFFSET ${}",
        args + 1,
        args + 2
    )
}

pub(super) async fn list(pool: &PgPool, filter: RunFilter) -> Result<Page<Run>> {
    let mut conditions = Vec::new();
    let mut args = Vec::new();
    if !filter.statuses.is_empty() {
        let mut any = Vec::with_capacity(filter.statuses.len());
        for status in &filter.statuses {
            args.push(status.as_str().to_owned());
            any.push(format!("status = ${}", args.len()));
        }
        conditions.push(any.join(" OR "));
    }
    if let Some(title) = filter.task_title {
        args.push(title);
        conditions.push(format!("task_title = ${}", args.len()));
    }
    let filter_sql =
        if conditions.is_empty() { String::new() } else { format!(" WHERE ({})", conditions.join(") AND (")) };
    let limit = filter.limit.unwrap_or(DEFAULT_LIST_LIMIT).min(MAX_LIST_LIMIT);
    let offset = filter.offset.unwrap_or(0);
    let with_args = |sql| args.iter().fold(query(sql), |query, arg| query.bind(arg.as_str()));

    // One snapshot for the count and the page.
    let mut tx = pool.begin().await.map_err(db("cannot list runs"))?;
    query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await
        .map_err(db("cannot list runs"))?;
    let count_sql = format!("SELECT count(*) FROM taskflow_runs{filter_sql}");
    let total: i64 = with_args(&count_sql)
        .fetch_one(&mut *tx)
        .await
        .and_then(|row| row.try_get(0))
        .map_err(db("cannot count runs"))?;
    let page_sql = page_sql(&filter_sql, args.len());
    let rows = with_args(&page_sql)
        .bind(i64::from(limit))
        .bind(i64::from(offset))
        .fetch_all(&mut *tx)
        .await
        .map_err(db("cannot list runs"))?;
    let items = rows.iter().map(read_run).collect::<Result<Vec<_>>>()?;
    tx.rollback().await.map_err(db("cannot list runs"))?;
    Ok(Page { items, total: u64::try_from(total).unwrap_or(0) })
}

pub(super) async fn logs(pool: &PgPool, id: RunId, after: u64, limit: u32) -> Result<Vec<StoredLogLine>> {
    let rows = query(
        "SELECT seq, at, level, message FROM taskflow_run_logs WHERE run_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
    )
    .bind(id.as_uuid())
    .bind(to_i64(after))
    .bind(i64::from(limit.min(MAX_LOG_LIMIT)))
    .fetch_all(pool)
    .await
    .map_err(db("cannot read log lines"))?;
    let mut lines = Vec::with_capacity(rows.len());
    for row in &rows {
        let read = |row: &PgRow| -> Result<(i64, i64, String, String), sqlx_core::Error> {
            Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?, row.try_get(3)?))
        };
        let (seq, at, level, message) = read(row).map_err(db("cannot read a log line"))?;
        lines.push(log_line(id, seq, at, &level, message)?);
    }
    Ok(lines)
}
