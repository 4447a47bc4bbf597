-- Deliveries to an endpoint that failed for good in a row; reset by a success. Enough of
-- them deactivate the webhook.
ALTER TABLE endpoints ADD COLUMN consecutive_failures integer NOT NULL DEFAULT 0;

-- Operational events hookline publishes itself (webhook.disabled) are routed like
-- upstream ones.
ALTER TABLE events DROP CONSTRAINT events_origin_check;
ALTER TABLE events ADD CONSTRAINT events_origin_check CHECK (origin IN ('upstream', 'ping', 'test', 'system'));
