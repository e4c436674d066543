-- The concurrency limits each worker declared at its claims: a claim
-- honours the smallest limit any live declaration gives a task, so binaries
-- of different versions sharing one database during a rolling upgrade (one
-- with `concurrency = 2`, one with 5, one with none) never run more than
-- the strictest of them. A declaration lives ten leases past its worker's
-- last claim, in the database's clock. Keyed by worker first: each claim
-- replaces its own rows.
CREATE TABLE taskflow_task_limits (
    worker_id   TEXT    NOT NULL,
    task_title  TEXT    NOT NULL,
    max_running BIGINT  NOT NULL,
    expires_at  BIGINT  NOT NULL, -- ms since the Unix epoch
    PRIMARY KEY (worker_id, task_title)
);
