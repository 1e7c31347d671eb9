-- Message ids become the legacy api-gateway's MongoDB ObjectIds (24
-- lowercase hex: 4-byte seconds, 5 random bytes, 3-byte counter), so that
-- ids in responses, Location, events and Nats-Msg-Id are what clients and
-- workers had before the cutover. Stored as text: what an SRE pastes from
-- a log or a response is what the row holds.
--
-- Rows written before this migration carry UUIDv7 ids. Each becomes the
-- ObjectId made of the UUID's own creation second (its 48-bit millisecond
-- prefix / 1000) and its last 8 bytes (random in a UUIDv7): a pure function
-- of the old id, so the same old id always maps to the same new one and
-- creation order is kept. Outbox payloads already written keep the id they
-- were committed with (an event is not rewritten after the fact); their
-- rows point at the new id.
ALTER TABLE orch.message_status_history
    DROP CONSTRAINT message_status_history_message_id_fkey;

ALTER TABLE orch.messages ALTER COLUMN id TYPE text USING id::text;
ALTER TABLE orch.message_status_history ALTER COLUMN message_id TYPE text USING message_id::text;
ALTER TABLE orch.outbox ALTER COLUMN message_id TYPE text USING message_id::text;

CREATE FUNCTION pg_temp.object_id_of(u text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT lpad(to_hex((('x' || substr(replace(u, '-', ''), 1, 12))::bit(48)::bigint) / 1000), 8, '0')
           || substr(replace(u, '-', ''), 17, 16)
$$;

UPDATE orch.messages SET id = pg_temp.object_id_of(id) WHERE length(id) = 36;
UPDATE orch.message_status_history SET message_id = pg_temp.object_id_of(message_id)
 WHERE length(message_id) = 36;
UPDATE orch.outbox SET message_id = pg_temp.object_id_of(message_id) WHERE length(message_id) = 36;
DROP FUNCTION pg_temp.object_id_of(text);

ALTER TABLE orch.messages
    ADD CONSTRAINT messages_id_object_id CHECK (id ~ '^[0-9a-f]{24}$');
ALTER TABLE orch.message_status_history
    ADD CONSTRAINT message_status_history_message_id_fkey
    FOREIGN KEY (message_id) REFERENCES orch.messages (id) ON DELETE CASCADE;
