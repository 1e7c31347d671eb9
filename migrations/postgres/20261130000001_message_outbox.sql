-- The message row is its own outbox, and the history holds only what
-- arrived from downstream (#17).
--
-- * The event to publish (subject, headers, payload) and the relay's
--   bookkeeping (attempts, next attempt, lease, last error, published_at)
--   move onto orch.messages; the relay finds pending work through the
--   partial index messages_unpublished (only unpublished rows that carry
--   an event). Publishing sets published_at and drops the headers and
--   payload (never needed again: a published row is never republished).
-- * `accepted` and `queued` are no longer written as history rows: they are
--   the message's created_at and published_at. A history row with either
--   status is kept only where it says something the timestamps do not (a
--   downstream `queued` recorded before the relay published); reads prefer
--   it to the derived entry, so GET /v1/sms/{id} answers as before.
--
-- Replicas of an earlier release must be stopped before this runs: they
-- write orch.outbox, which goes.
ALTER TABLE orch.messages
    ADD COLUMN event_subject    text,
    ADD COLUMN event_headers    jsonb,
    ADD COLUMN event_payload    bytea,
    ADD COLUMN published_at     timestamptz,
    ADD COLUMN publish_attempts integer NOT NULL DEFAULT 0,
    ADD COLUMN next_attempt_at  timestamptz,
    ADD COLUMN lease_until      timestamptz,
    ADD COLUMN last_error       text;

-- One outbox row per message was written; should there be several, the
-- first (lowest id) stands for the message.
UPDATE orch.messages m
   SET event_subject    = o.subject,
       event_headers    = CASE WHEN o.published_at IS NULL THEN o.headers END,
       event_payload    = CASE WHEN o.published_at IS NULL THEN o.payload END,
       published_at     = o.published_at,
       publish_attempts = o.attempts,
       next_attempt_at  = CASE WHEN o.published_at IS NULL THEN o.next_attempt_at END,
       last_error       = CASE WHEN o.published_at IS NULL THEN o.last_error END
  FROM (SELECT DISTINCT ON (message_id) * FROM orch.outbox ORDER BY message_id, id) o
 WHERE o.message_id = m.id;

-- Outbox rows already reaped: the relay's `queued` row says when it published.
UPDATE orch.messages m
   SET published_at = h.at
  FROM orch.message_status_history h
 WHERE h.message_id = m.id AND h.status = 'queued' AND m.published_at IS NULL
   AND NOT EXISTS (SELECT 1 FROM orch.outbox o WHERE o.message_id = m.id);

-- History rows the timestamps now say.
DELETE FROM orch.message_status_history h
 USING orch.messages m
 WHERE h.message_id = m.id
   AND ((h.status = 'accepted' AND h.at = m.created_at)
     OR (h.status = 'queued' AND h.at = m.published_at));

DROP TABLE orch.outbox;

CREATE INDEX messages_unpublished ON orch.messages (created_at, id)
    WHERE published_at IS NULL AND event_subject IS NOT NULL;
