-- Message ids become the legacy api-gateway's MongoDB ObjectIds (24
-- lowercase hex); see migrations/postgres for the layout. SQLite already
-- holds ids as text, so only existing UUIDv7 rows change: each becomes the
-- ObjectId of the UUID's own creation second (its 48-bit millisecond
-- prefix / 1000) and its last 8 bytes, the same pure function as on
-- Postgres. The foreign key is checked at commit (defer_foreign_keys), so
-- parent and child rows can change in either order.
PRAGMA defer_foreign_keys = ON;

CREATE TEMP TABLE id_map AS
WITH hex(u, h) AS (
    SELECT id, replace(id, '-', '') FROM messages WHERE length(id) = 36
    UNION
    SELECT message_id, replace(message_id, '-', '') FROM outbox WHERE length(message_id) = 36
),
digits(u, h, i, ms) AS (
    SELECT u, h, 0, 0 FROM hex
    UNION ALL
    SELECT u, h, i + 1, ms * 16 + instr('0123456789abcdef', substr(h, i + 1, 1)) - 1
      FROM digits WHERE i < 12
)
SELECT u AS old_id, printf('%08x', ms / 1000) || substr(h, 17, 16) AS new_id
  FROM digits WHERE i = 12;

UPDATE messages SET id = (SELECT new_id FROM id_map WHERE old_id = messages.id)
 WHERE id IN (SELECT old_id FROM id_map);
UPDATE message_status_history
   SET message_id = (SELECT new_id FROM id_map WHERE old_id = message_status_history.message_id)
 WHERE message_id IN (SELECT old_id FROM id_map);
UPDATE outbox SET message_id = (SELECT new_id FROM id_map WHERE old_id = outbox.message_id)
 WHERE message_id IN (SELECT old_id FROM id_map);

DROP TABLE id_map;
