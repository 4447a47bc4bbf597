-- Management POSTs made with an `Idempotency-Key` header: the first request's answer,
-- replayed to a retry with the same key for 24 hours (the retention pass removes older
-- ones). `status` is NULL while the first request is being answered. The body is sealed
-- with the secrets key: a create's answer can hold a signing secret or an API key.
CREATE TABLE idempotency_keys (
    organization_id text NOT NULL,
    key text NOT NULL,
    request_hash bytea NOT NULL,
    status smallint,
    content_type text,
    sealed_body bytea,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, key)
);
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);
