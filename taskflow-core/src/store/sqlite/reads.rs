//! The reads: one run, a page of runs, a run's log lines. They run on the
//! read-only connections.

use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, Row, params, params_from_iter};

use super::rows::{db, query_runs};
use super::{RUN_COLUMNS, statements};
use crate::run::{Run, RunId};
use crate::store::row::{log_line, to_i64};
use crate::store::{DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT, MAX_LOG_LIMIT, Page, Result, RunFilter, StoredLogLine};

pub(super) fn load(conn: &Connection, id: RunId) -> Result<Option<Run>> {
    let mut runs = query_runs(conn, statements::LOAD_RUN, [id.to_string()], "cannot read a run")?;
    Ok(runs.pop())
}

pub(super) fn list(conn: &mut Connection, filter: RunFilter) -> Result<Page<Run>> {
    let mut conditions = Vec::new();
    let mut args = Vec::new();
    // `=`/`OR`, not `IN (…)`: see migration 0002.
    let statuses = vec!["status = ?"; filter.statuses.len()].join(" OR ");
    if !filter.statuses.is_empty() {
        conditions.push(statuses.as_str());
        args.extend(filter.statuses.iter().map(|status| SqlValue::Text(status.as_str().to_owned())));
    }
    if let Some(title) = filter.task_title {
        conditions.push("task_title = ?");
        args.push(SqlValue::Text(title));
    }
    let filter_sql =
        if conditions.is_empty() { String::new() } else { format!(" WHERE ({})", conditions.join(") AND (")) };
    let limit = filter.limit.unwrap_or(DEFAULT_LIST_LIMIT).min(MAX_LIST_LIMIT);
    let offset = filter.offset.unwrap_or(0);

    // One snapshot for the count and the page.
    let tx = conn.transaction().map_err(db("cannot list runs"))?;
    let total: i64 = tx
        .prepare_cached(&format!("SELECT COUNT(*) FROM runs{filter_sql}"))
        .and_then(|mut stmt| stmt.query_row(params_from_iter(args.iter()), |row| row.get(0)))
        .map_err(db("cannot count runs"))?;
    args.push(SqlValue::Integer(i64::from(limit)));
    args.push(SqlValue::Integer(i64::from(offset)));
    let sql = format!("SELECT {RUN_COLUMNS} FROM runs{filter_sql} ORDER BY id DESC LIMIT ? OFFSET ?");
    let items = query_runs(&tx, &sql, params_from_iter(args), "cannot list runs")?;
    drop(tx);
    Ok(Page { items, total: u64::try_from(total).unwrap_or(0) })
}

pub(super) fn logs(conn: &Connection, id: RunId, after: u64, limit: u32) -> Result<Vec<StoredLogLine>> {
    let run_id = id.to_string();
    let mut stmt = conn
        .prepare_cached(
            "SELECT seq, at, level, message FROM run_logs WHERE run_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
        )
        .map_err(db("cannot read log lines"))?;
    let mut rows =
        stmt.query(params![run_id, to_i64(after), limit.min(MAX_LOG_LIMIT)]).map_err(db("cannot read log lines"))?;
    let mut lines = Vec::new();
    while let Some(row) = rows.next().map_err(db("cannot read log lines"))? {
        let read = |row: &Row<'_>| -> rusqlite::Result<(i64, i64, String, String)> {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
        };
        let (seq, at, level, message) = read(row).map_err(db("cannot read a log line"))?;
        lines.push(log_line(id, seq, at, &level, message)?);
    }
    Ok(lines)
}
