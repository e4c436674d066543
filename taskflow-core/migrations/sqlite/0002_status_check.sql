-- The status CHECK as comparisons instead of `IN (…)`: SQLite evaluates
-- an `IN` over more than two constants by building a temporary B-tree of
-- them, and a CHECK is evaluated at every INSERT and every UPDATE that sets
-- the status: three per run (its submit, claim and finish), each opening,
-- filling and closing a B-tree. Measured in B1 (`perf`):
-- `sqlite3BtreeOpen`/`Close` and the pager set-up they do were ~8 % of the
-- writer thread. The constraint itself is unchanged.
--
-- SQLite cannot change a CHECK in place: this is its documented rebuild
-- (create the new table, copy, drop, rename, recreate the indexes), run by
-- `migrate` with foreign keys off and `foreign_key_check` before commit.

CREATE TABLE runs_new (
    id              TEXT    NOT NULL PRIMARY KEY, -- a UUIDv7: sorts by creation
    task_title      TEXT    NOT NULL,
    payload         TEXT    NOT NULL,             -- JSON
    status          TEXT    NOT NULL
        CHECK (status = 'pending' OR status = 'running' OR status = 'completed' OR status = 'failed'
               OR status = 'cancelled'),
    attempt         INTEGER NOT NULL,
    max_attempts    INTEGER NOT NULL,
    executor        TEXT    NOT NULL,
    priority        INTEGER NOT NULL,
    not_before      INTEGER NOT NULL,
    timeout_ms      INTEGER,
    retry_delay_ms  INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    started_at      INTEGER,
    finished_at     INTEGER,
    result          TEXT,                         -- JSON
    error_kind      TEXT,
    error_message   TEXT,
    worker_id       TEXT,
    lease_until     INTEGER,
    idempotency_key TEXT,
    unique_key      TEXT    NOT NULL,             -- title NUL canonical payload
    log_count       INTEGER NOT NULL DEFAULT 0
) STRICT;

INSERT INTO runs_new SELECT * FROM runs;
DROP TABLE runs;
ALTER TABLE runs_new RENAME TO runs;

-- Claiming: the next pending runs, highest priority first, then oldest.
CREATE INDEX runs_claim ON runs (status, priority DESC, not_before, id);
-- Rescue: running runs whose lease ended.
CREATE INDEX runs_lease ON runs (status, lease_until);
-- Prune: final runs finished before a time.
CREATE INDEX runs_finished ON runs (finished_at) WHERE finished_at IS NOT NULL;
-- Listing one task's runs, newest first.
CREATE INDEX runs_title ON runs (task_title, id);
-- One run per idempotency key.
CREATE UNIQUE INDEX runs_idempotency ON runs (idempotency_key) WHERE idempotency_key IS NOT NULL;
-- De-duplication of active runs by title and payload.
CREATE INDEX runs_unique_active ON runs (unique_key) WHERE status IN ('pending', 'running');
