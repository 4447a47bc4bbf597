-- Secret rotation: during the overlap deliveries carry signatures made with both the
-- new and the previous secret, so receivers can switch without losing a message.
ALTER TABLE webhooks ADD COLUMN previous_signing_secret bytea;
ALTER TABLE webhooks ADD COLUMN previous_secret_expires_at timestamptz;

-- Where an event came from: an upstream application, an activation ping, or a test
-- event an operator asked for.
ALTER TABLE events ADD COLUMN origin text NOT NULL DEFAULT 'upstream' CHECK (origin IN ('upstream', 'ping', 'test'));
