-- Runs and their log lines. Times are milliseconds since the Unix epoch;
-- JSON is stored as text. Applied by `SqliteStore::open` inside one
-- transaction and recorded in `PRAGMA user_version`.

CREATE TABLE runs (
    id              TEXT    NOT NULL PRIMARY KEY, -- a UUIDv7: sorts by creation
    task_title      TEXT    NOT NULL,
    payload         TEXT    NOT NULL,             -- JSON
    status          TEXT    NOT NULL
        CHECK (status IN ('pending', 'running', 'completed', 'failed', 'cancelled')),
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

CREATE TABLE run_logs (
    run_id  TEXT    NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    seq     INTEGER NOT NULL,                     -- from 1, per run
    at      INTEGER NOT NULL,
    level   TEXT    NOT NULL,
    message TEXT    NOT NULL,
    PRIMARY KEY (run_id, seq)
) STRICT, WITHOUT ROWID;
