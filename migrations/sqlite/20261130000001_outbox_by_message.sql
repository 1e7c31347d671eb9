-- The relay names an event by its message's id (one event per message),
-- as on Postgres, where the message row is its own outbox (#17).
CREATE INDEX IF NOT EXISTS outbox_message ON outbox (message_id);
