-- An endpoint's circuit breaker, shared by every worker: the run of attempts that failed
-- as the endpoint's own trouble, and once open, when the next probe may go and until
-- when a probe in flight holds it. No row: closed, with no failure in a row.
CREATE TABLE endpoint_circuits (
    endpoint_id   text PRIMARY KEY REFERENCES endpoints (id) ON DELETE CASCADE,
    failures      integer NOT NULL DEFAULT 0,
    opened_at     timestamptz,
    probe_wait_ms bigint,
    probe_at      timestamptz,
    probing_until timestamptz,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- A parked delivery's job left the delivery queue: its endpoint's circuit is open or the
-- endpoint is at its cap. It waits here, oldest first, until a worker releases it.
ALTER TABLE deliveries ADD COLUMN parked_at timestamptz;
CREATE INDEX deliveries_parked ON deliveries (endpoint_id, parked_at) WHERE parked_at IS NOT NULL;
