-- Events are partitioned by day like attempts (V11), so retention drops a day of them
-- at once. Their partition key is their id, a ULID, so a day's partition holds the
-- events received that day (UTC).
--
-- A unique constraint of a partitioned table must hold its partition key, so the
-- idempotency key (organisation, message id) moves to a table of its own: one row per
-- event that has a key of its own (an event without one is keyed by its own id, which is
-- unique anyway, and needs no row). A key lasts as long as its event: retention removes
-- both.
CREATE TABLE event_keys (
    organization_id text NOT NULL,
    message_id      text NOT NULL,
    event_id        text NOT NULL,
    PRIMARY KEY (organization_id, message_id)
);
-- Retention removes keys by the age of their event.
CREATE INDEX event_keys_by_event ON event_keys (event_id);
INSERT INTO event_keys (organization_id, message_id, event_id)
    SELECT organization_id, message_id, id FROM events WHERE message_id <> id;

-- A foreign key into a partitioned table keeps its partitions from being dropped (a
-- detach checks every referencing row under an exclusive lock). Deliveries are made
-- only for stored events (the router's statement joins them), and retention removes an
-- event's deliveries before the event, so nothing needs the check.
ALTER TABLE deliveries DROP CONSTRAINT deliveries_event_id_fkey;

ALTER TABLE events RENAME TO events_before_partitions;
ALTER TABLE events_before_partitions RENAME CONSTRAINT events_pkey TO events_before_partitions_pkey;
ALTER TABLE events_before_partitions DROP CONSTRAINT events_organization_id_message_id_key;
ALTER INDEX events_unrouted RENAME TO events_before_partitions_unrouted;
CREATE TABLE events (LIKE events_before_partitions INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
    PARTITION BY RANGE (id);
ALTER TABLE events ADD PRIMARY KEY (id);
ALTER TABLE events ADD FOREIGN KEY (organization_id) REFERENCES organizations (id);
CREATE INDEX events_unrouted ON events (received_at) WHERE routed_at IS NULL;

-- What was stored before stays in one partition, for events received up to the end of
-- today; the scheduler makes the daily partitions after it ahead of need, and an event
-- received beyond the last of those lands in the default partition, emptied row by row.
DO $$
BEGIN
    EXECUTE format('ALTER TABLE events ATTACH PARTITION events_before_partitions FOR VALUES FROM (MINVALUE) TO (%L)',
        'evt_' || hookline_ulid_floor(date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' + interval '1 day'));
END $$;
CREATE TABLE events_default PARTITION OF events DEFAULT;
