-- Runs and their log lines, for PostgreSQL. Applied by
-- `PostgresStore::connect` in one transaction under an advisory lock and
-- recorded in `taskflow_migrations`.
--
-- The tables carry a `taskflow_` prefix: a PostgreSQL database is often
-- shared with the application's own tables.
--
-- Times are milliseconds since the Unix epoch (`bigint`), as in SQLite, so
-- every `Timestamp` round-trips exactly (`timestamptz` would narrow both the
-- range and the meaning). JSON is `json`, not `jsonb`: `jsonb` reorders
-- object keys, respells numbers (`1e15` comes back as an integer) and
-- refuses `\u0000`; `json` keeps the text as written, as SQLite does, and
-- nothing queries inside payloads or results.

CREATE TABLE taskflow_runs (
    id              uuid    NOT NULL PRIMARY KEY, -- a UUIDv7: sorts by creation
    task_title      text    NOT NULL,
    payload         json    NOT NULL,
    status          text    NOT NULL
        CHECK (status IN ('pending', 'running', 'completed', 'failed', 'cancelled')),
    attempt         bigint  NOT NULL,
    max_attempts    bigint  NOT NULL,
    executor        text    NOT NULL,
    priority        integer NOT NULL,
    not_before      bigint  NOT NULL,
    timeout_ms      bigint,
    retry_delay_ms  bigint  NOT NULL,
    created_at      bigint  NOT NULL,
    started_at      bigint,
    finished_at     bigint,
    result          json,
    error_kind      text,
    error_message   text,
    worker_id       text,
    lease_until     bigint,
    idempotency_key text,
    -- SHA-256 of the title, a NUL and the canonical payload: a btree entry
    -- must stay small, and text cannot hold the NUL.
    unique_key      bytea   NOT NULL,
    -- Submitted with `unique` (de-duplicated against active runs).
    dedup           boolean NOT NULL,
    log_count       bigint  NOT NULL DEFAULT 0
);

-- Claiming: the next pending runs, highest priority first, then oldest.
CREATE INDEX taskflow_runs_claim ON taskflow_runs (priority DESC, not_before, id) WHERE status = 'pending';
-- Rescue: running runs whose lease ended.
CREATE INDEX taskflow_runs_lease ON taskflow_runs (lease_until) WHERE status = 'running';
-- Prune: final runs finished before a time.
CREATE INDEX taskflow_runs_finished ON taskflow_runs (finished_at) WHERE finished_at IS NOT NULL;
-- Listing, newest first: by task, or by status.
CREATE INDEX taskflow_runs_title ON taskflow_runs (task_title, id);
CREATE INDEX taskflow_runs_status ON taskflow_runs (status, id);
-- One run per idempotency key (NULLs are distinct).
CREATE UNIQUE INDEX taskflow_runs_idempotency ON taskflow_runs (idempotency_key);
-- At most one active de-duplicated run per title and payload: two servers
-- submitting the same run at once make one run (`ON CONFLICT`).
CREATE UNIQUE INDEX taskflow_runs_unique_active ON taskflow_runs (unique_key)
    WHERE dedup AND status IN ('pending', 'running');
-- Finding the active run with a title and payload, de-duplicated or not.
CREATE INDEX taskflow_runs_active ON taskflow_runs (unique_key) WHERE status IN ('pending', 'running');

CREATE TABLE taskflow_run_logs (
    run_id  uuid   NOT NULL REFERENCES taskflow_runs (id) ON DELETE CASCADE,
    seq     bigint NOT NULL,                      -- from 1, per run
    at      bigint NOT NULL,
    level   text   NOT NULL,
    message text   NOT NULL,
    PRIMARY KEY (run_id, seq)
);
