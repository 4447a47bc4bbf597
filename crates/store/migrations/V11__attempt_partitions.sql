-- Attempts (each keeping up to 64 KiB of response body) are the table that grows
-- fastest: they are partitioned by day, so retention drops a day's partition at once,
-- with no long lock and no bloat, instead of deleting rows.
--
-- The partition key is the delivery id: a ULID, so its text order is the order in
-- which deliveries were created, and the primary key (delivery_id, attempt_number)
-- stays unique across partitions, as recording an attempt once relies on. A day's
-- partition holds the attempts of the deliveries created that day (UTC).

-- The smallest id body a ULID made at `at` can have: the 48-bit millisecond time in
-- Crockford base32 (lowercase, as ids are written), then the lowest randomness. Every
-- partition bound is written with it.
CREATE FUNCTION hookline_ulid_floor(at timestamptz) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT AS $$
DECLARE
    ms bigint := floor(extract(epoch FROM at) * 1000);
    alphabet constant text := '0123456789abcdefghjkmnpqrstvwxyz';
    encoded text := '';
BEGIN
    FOR i IN 1..10 LOOP
        encoded := substr(alphabet, (ms % 32)::int + 1, 1) || encoded;
        ms := ms / 32;
    END LOOP;
    RETURN encoded || '0000000000000000';
END $$;

ALTER TABLE attempts RENAME TO attempts_before_partitions;
ALTER TABLE attempts_before_partitions RENAME CONSTRAINT attempts_pkey TO attempts_before_partitions_pkey;
CREATE TABLE attempts (LIKE attempts_before_partitions INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
    PARTITION BY RANGE (delivery_id);
ALTER TABLE attempts ADD PRIMARY KEY (delivery_id, attempt_number);
ALTER TABLE attempts ADD FOREIGN KEY (delivery_id) REFERENCES deliveries (id);

-- What was recorded before stays in one partition, for deliveries made up to the end of
-- today; the scheduler makes the daily partitions after it ahead of need. A delivery
-- made beyond the last of those (a scheduler stopped for a week) lands in the default
-- partition, which retention empties row by row.
DO $$
BEGIN
    EXECUTE format('ALTER TABLE attempts ATTACH PARTITION attempts_before_partitions FOR VALUES FROM (MINVALUE) TO (%L)',
        'dlv_' || hookline_ulid_floor(date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' + interval '1 day'));
END $$;
CREATE TABLE attempts_default PARTITION OF attempts DEFAULT;
