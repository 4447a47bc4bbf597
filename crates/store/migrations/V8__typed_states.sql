-- Delivery states, error kinds and attempt triggers are enums, read and written as the
-- Rust enums of hookline-core (`DeliveryStatus`, `ErrorKind`, `Trigger`): a statement
-- binds a value, never spells one.
CREATE TYPE delivery_status AS ENUM ('pending', 'retrying', 'succeeded', 'failed');
CREATE TYPE error_kind AS ENUM
    ('http_status', 'timeout', 'connect', 'dns', 'tls', 'blocked_address', 'invalid_endpoint', 'other');
CREATE TYPE attempt_trigger AS ENUM ('scheduled', 'manual');

DROP INDEX deliveries_open;
ALTER TABLE deliveries DROP CONSTRAINT deliveries_status_check;
ALTER TABLE deliveries ALTER COLUMN status DROP DEFAULT;
ALTER TABLE deliveries ALTER COLUMN status TYPE delivery_status USING status::delivery_status;
ALTER TABLE deliveries ALTER COLUMN status SET DEFAULT 'pending';
ALTER TABLE deliveries ALTER COLUMN last_error_kind TYPE error_kind USING last_error_kind::error_kind;

-- Whether another attempt is still expected (DeliveryStatus::OPEN): what the
-- reconciliation sweep and the settle statement ask, kept by the database so no
-- statement lists the open states itself.
ALTER TABLE deliveries ADD COLUMN open boolean GENERATED ALWAYS AS (status IN ('pending', 'retrying')) STORED;
CREATE INDEX deliveries_open ON deliveries (updated_at) WHERE open;

ALTER TABLE attempts ALTER COLUMN error_kind TYPE error_kind USING error_kind::error_kind;
ALTER TABLE attempts DROP CONSTRAINT attempts_trigger_check;
ALTER TABLE attempts ALTER COLUMN trigger DROP DEFAULT;
ALTER TABLE attempts ALTER COLUMN trigger TYPE attempt_trigger USING trigger::attempt_trigger;
ALTER TABLE attempts ALTER COLUMN trigger SET DEFAULT 'scheduled';
