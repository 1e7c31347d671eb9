WITH c AS (UPDATE orch.messages SET lease_until = now() + interval '10 s', publish_attempts = publish_attempts + 1
  WHERE id IN (SELECT id FROM orch.messages WHERE published_at IS NULL AND event_subject IS NOT NULL
     AND (next_attempt_at IS NULL OR next_attempt_at <= now()) AND (lease_until IS NULL OR lease_until < now())
     ORDER BY created_at, id LIMIT 512 FOR UPDATE SKIP LOCKED)
  RETURNING id)
SELECT coalesce(array_agg(id), '{}') AS mids FROM c \gset
UPDATE orch.messages SET published_at = now(), lease_until = NULL, last_error = NULL, next_attempt_at = NULL,
  event_headers = NULL, event_payload = NULL,
  status = CASE WHEN status = 'accepted' THEN 'queued' ELSE status END,
  updated_at = CASE WHEN status = 'accepted' THEN now() ELSE updated_at END
 WHERE id = ANY(:'mids'::text[]) AND published_at IS NULL;
