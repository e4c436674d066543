-- Remote workers. An admin makes a one-time provision token; a worker
-- presents it once to register and is given a worker token of its own.
-- Only SHA-256 digests (hex) of tokens are kept.
CREATE TABLE provision_tokens (
    token_hash TEXT    PRIMARY KEY,
    name       TEXT    NOT NULL,
    created_at INTEGER NOT NULL, -- ms since the Unix epoch
    expires_at INTEGER NOT NULL,
    used_at    INTEGER,          -- NULL until a worker registers with it
    worker_id  TEXT
) WITHOUT ROWID;

CREATE TABLE workers (
    id            TEXT    PRIMARY KEY,
    token_hash    TEXT    NOT NULL UNIQUE,
    name          TEXT    NOT NULL,
    host          TEXT    NOT NULL,
    version       TEXT    NOT NULL,
    executors     TEXT    NOT NULL, -- JSON arrays of names
    tasks         TEXT    NOT NULL,
    queues        TEXT    NOT NULL,
    registered_at INTEGER NOT NULL,
    last_seen     INTEGER NOT NULL,
    revoked_at    INTEGER
) WITHOUT ROWID;
