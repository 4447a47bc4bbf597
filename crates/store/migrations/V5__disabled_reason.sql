-- Why hookline itself deactivated a webhook (a receiver answered 410 Gone, or too many
-- deliveries in a row failed). Cleared when someone activates it again.
ALTER TABLE webhooks ADD COLUMN disabled_reason text;
