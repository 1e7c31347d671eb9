WITH r AS (
  SELECT substr(md5(random()::text || clock_timestamp()::text || g), 1, 24) AS id,
         md5(random()::text || clock_timestamp()::text || g) AS key, now() AS at
    FROM generate_series(1, 1) g),
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
    (id, tenant_id, shadow, status, to_number, sender, body, encoding, segments, correlation_id, created_at, updated_at)
  SELECT id, 'pgbench', false, 'accepted', '+447700900123', 'Acme', 'Your code is 123456', 'GSM-7', 1, key, at, at
    FROM r WHERE key IN (SELECT key FROM k)
  RETURNING id, created_at),
h AS (
  INSERT INTO orch.message_status_history (message_id, status, at) SELECT id, 'accepted', created_at FROM m),
o AS (
  INSERT INTO orch.outbox (message_id, subject, headers, payload, created_at, next_attempt_at)
  SELECT id, 'pgbench.sms.outbound.request', '[["Nats-Msg-Id","x"]]'::jsonb, convert_to(repeat('e', 700), 'UTF8'),
         clock_timestamp(), clock_timestamp()
    FROM m)
SELECT count(*) FROM k;
