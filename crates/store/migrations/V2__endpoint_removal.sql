-- Endpoints replaced by a webhook update are kept (deliveries refer to them) but no
-- longer receive anything.
ALTER TABLE endpoints ADD COLUMN removed_at timestamptz;
ALTER TABLE endpoints DROP CONSTRAINT endpoints_webhook_id_position_key;
CREATE UNIQUE INDEX endpoints_live_position ON endpoints (webhook_id, position) WHERE removed_at IS NULL;
