-- Remote workers. An admin makes a one-time provision token; a worker
-- presents it once to register and is given a worker token of its own.
-- Only SHA-256 digests (hex) of tokens are kept.
CREATE TABLE taskflow_provision_tokens (
    token_hash text   PRIMARY KEY,
    name       text   NOT NULL,
    created_at bigint NOT NULL, -- ms since the Unix epoch
    expires_at bigint NOT NULL,
    used_at    bigint,          -- NULL until a worker registers with it
    worker_id  text
);

CREATE TABLE taskflow_workers (
    id            text   PRIMARY KEY,
    token_hash    text   NOT NULL UNIQUE,
    name          text   NOT NULL,
    host          text   NOT NULL,
    version       text   NOT NULL,
    executors     json   NOT NULL, -- arrays of names
    tasks         json   NOT NULL,
    queues        json   NOT NULL,
    registered_at bigint NOT NULL,
    last_seen     bigint NOT NULL,
    revoked_at    bigint
);
