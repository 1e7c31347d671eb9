WITH c AS (UPDATE orch.outbox SET lease_until = now() + interval '10 s', attempts = attempts + 1
  WHERE id IN (SELECT id FROM orch.outbox WHERE published_at IS NULL AND next_attempt_at <= now()
     AND (lease_until IS NULL OR lease_until < now()) ORDER BY id LIMIT 512 FOR UPDATE SKIP LOCKED)
  RETURNING id, message_id)
SELECT coalesce(array_agg(id), '{}') AS ids, coalesce(array_agg(message_id), '{}') AS mids FROM c \gset
BEGIN;
UPDATE orch.outbox SET published_at = now(), lease_until = NULL, last_error = NULL WHERE id = ANY(:'ids'::bigint[]);
UPDATE orch.messages SET status = 'queued', updated_at = now() WHERE id = ANY(:'mids'::text[]) AND status = 'accepted';
INSERT INTO orch.message_status_history (message_id, status, at) SELECT m, 'queued', now() FROM unnest(:'mids'::text[]) AS m ON CONFLICT DO NOTHING;
COMMIT;
