-- The orchestrator's accepting statement (orchestrator/src/store/postgres.rs,
-- ACCEPT) as a pgbench script: a fresh Idempotency-Key and one message row
-- that is its own outbox row (a ~700-byte event on it), per request; no
-- history row (`accepted` is the row's created_at, #17). :batch requests
-- per transaction (-D batch=N) show what committing several requests
-- together buys. Runs against the orch schema the orchestrator migrated in
-- the benchmark's database. The row is written already published, so the
-- running orchestrator's relay never claims it: this leaves out the one
-- entry in the partial index of unpublished rows that a real request
-- writes.
WITH r AS (
  SELECT substr(md5(random()::text || clock_timestamp()::text || g), 1, 24) AS id,
         md5(random()::text || clock_timestamp()::text || g) AS key, now() AS at
    FROM generate_series(1, :batch) g),
k AS (
  INSERT INTO orch.idempotency_keys
    (tenant_id, scope, key, fingerprint, response_status, response_headers, response_body, created_at, expires_at)
  SELECT 'pgbench', 'POST /v1/sms/send', key, repeat('f', 64), 201,
         '[["content-type","application/json"]]'::jsonb, convert_to(repeat('x', 300), 'UTF8'), at, at + interval '48 hours'
    FROM r
  ON CONFLICT (tenant_id, scope, key) DO UPDATE SET created_at = EXCLUDED.created_at
   WHERE orch.idempotency_keys.expires_at <= EXCLUDED.created_at
  RETURNING key),
m AS (
  INSERT INTO orch.messages
    (id, tenant_id, shadow, status, to_number, sender, body, encoding, segments, correlation_id, created_at, updated_at,
     event_subject, event_headers, event_payload, published_at)
  SELECT id, 'pgbench', false, 'accepted', '+447700900123', 'Acme', 'Your code is 123456', 'GSM-7', 1, key, at, at,
         'pgbench.sms.outbound.request', '[["Nats-Msg-Id","x"]]'::jsonb, convert_to(repeat('e', 700), 'UTF8'),
         clock_timestamp()
    FROM r WHERE key IN (SELECT key FROM k))
SELECT count(*) FROM k;
