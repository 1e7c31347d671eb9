-- Submit path of the orchestrator: messages, their status history, the
-- idempotency keys (48 h window) and the transactional outbox, in schema orch.
CREATE SCHEMA IF NOT EXISTS orch;

CREATE TABLE orch.messages (
    id              uuid        PRIMARY KEY,          -- UUIDv7: time-ordered
    tenant_id       text        NOT NULL,
    shadow          boolean     NOT NULL DEFAULT false,
    status          text        NOT NULL,
    to_number       text        NOT NULL,
    sender          text        NOT NULL,
    body            text        NOT NULL,
    encoding        text        NOT NULL,
    segments        integer     NOT NULL,
    reference       text,
    callback_url    text,
    schedule_at     timestamptz,
    validity_period integer,
    metadata        jsonb,
    correlation_id  text,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL
);
CREATE INDEX messages_tenant_created ON orch.messages (tenant_id, created_at);
CREATE INDEX messages_shadow_created ON orch.messages (created_at) WHERE shadow;

CREATE TABLE orch.message_status_history (
    message_id uuid        NOT NULL REFERENCES orch.messages (id) ON DELETE CASCADE,
    status     text        NOT NULL,
    at         timestamptz NOT NULL,
    error_code text,
    PRIMARY KEY (message_id, status)                 -- a status is recorded once
);

-- One row per (tenant, scope, key). Written only with the accepted result, in
-- the transaction that writes the messages: a crash leaves neither or both.
-- scope is the route (`send`, `bulk`), prefixed `shadow-` for shadow traffic.
CREATE TABLE orch.idempotency_keys (
    tenant_id        text        NOT NULL,
    scope            text        NOT NULL,
    key              text        NOT NULL,
    fingerprint      text        NOT NULL,
    response_status  smallint    NOT NULL,
    response_headers jsonb       NOT NULL,
    response_body    bytea       NOT NULL,
    created_at       timestamptz NOT NULL,
    expires_at       timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, scope, key)
);
CREATE INDEX idempotency_keys_expires ON orch.idempotency_keys (expires_at);

CREATE TABLE orch.outbox (
    id              bigserial   PRIMARY KEY,          -- creation order
    message_id      uuid        NOT NULL,
    subject         text        NOT NULL,
    headers         jsonb       NOT NULL,
    payload         bytea       NOT NULL,
    created_at      timestamptz NOT NULL,
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    lease_until     timestamptz,
    published_at    timestamptz,
    last_error      text
);
CREATE INDEX outbox_pending ON orch.outbox (id) WHERE published_at IS NULL;
CREATE INDEX outbox_published ON orch.outbox (published_at) WHERE published_at IS NOT NULL;
