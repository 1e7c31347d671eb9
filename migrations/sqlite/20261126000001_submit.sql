-- Embedded default: the same tables as migrations/postgres, in SQLite's
-- dialect (no schemas; ids as text; timestamps as RFC 3339 text in UTC).
CREATE TABLE messages (
    id              TEXT    PRIMARY KEY,
    tenant_id       TEXT    NOT NULL,
    shadow          INTEGER NOT NULL DEFAULT 0,
    status          TEXT    NOT NULL,
    to_number       TEXT    NOT NULL,
    sender          TEXT    NOT NULL,
    body            TEXT    NOT NULL,
    encoding        TEXT    NOT NULL,
    segments        INTEGER NOT NULL,
    reference       TEXT,
    callback_url    TEXT,
    schedule_at     TEXT,
    validity_period INTEGER,
    metadata        TEXT,
    correlation_id  TEXT,
    created_at      TEXT    NOT NULL,
    updated_at      TEXT    NOT NULL
);
CREATE INDEX messages_tenant_created ON messages (tenant_id, created_at);

CREATE TABLE message_status_history (
    message_id TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    status     TEXT NOT NULL,
    at         TEXT NOT NULL,
    error_code TEXT,
    PRIMARY KEY (message_id, status)
);

CREATE TABLE idempotency_keys (
    tenant_id        TEXT    NOT NULL,
    scope            TEXT    NOT NULL,
    key              TEXT    NOT NULL,
    fingerprint      TEXT    NOT NULL,
    response_status  INTEGER NOT NULL,
    response_headers TEXT    NOT NULL,
    response_body    BLOB    NOT NULL,
    created_at       TEXT    NOT NULL,
    expires_at       TEXT    NOT NULL,
    PRIMARY KEY (tenant_id, scope, key)
);
CREATE INDEX idempotency_keys_expires ON idempotency_keys (expires_at);

CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id      TEXT    NOT NULL,
    subject         TEXT    NOT NULL,
    headers         TEXT    NOT NULL,
    payload         BLOB    NOT NULL,
    created_at      TEXT    NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT    NOT NULL,
    lease_until     TEXT,
    published_at    TEXT,
    last_error      TEXT
);
CREATE INDEX outbox_pending ON outbox (id) WHERE published_at IS NULL;
