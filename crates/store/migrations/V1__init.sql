-- hookline schema, version 1.
-- Ids are text with a type prefix and a ULID body ("evt_01j…"), so they sort by time.
-- Uniqueness keys make every consumer idempotent:
--   an event by (organization_id, message_id), a delivery by (event_id, endpoint_id),
--   an attempt by (delivery_id, attempt_number).

CREATE TABLE organizations (
    id          text PRIMARY KEY,
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    id               text PRIMARY KEY,
    organization_id  text NOT NULL REFERENCES organizations (id),
    label            text NOT NULL,
    prefix           text NOT NULL,
    key_hash         text NOT NULL UNIQUE,
    scopes           text[] NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    revoked_at       timestamptz
);
CREATE INDEX api_keys_by_organization ON api_keys (organization_id, id);

-- The event catalog as loaded at start-up (the file is the source; this copy lets SQL
-- and operators see names and examples).
CREATE TABLE event_types (
    code         text PRIMARY KEY,
    component    text NOT NULL,
    name         text NOT NULL,
    description  text NOT NULL,
    example      jsonb NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- Receiver credentials. `secret` holds the kind's fields as JSON, encrypted with the
-- configured secrets.key (nonce || ciphertext); it is never stored in clear.
CREATE TABLE credentials (
    id               text PRIMARY KEY,
    organization_id  text NOT NULL REFERENCES organizations (id),
    name             text NOT NULL,
    kind             text NOT NULL CHECK (kind IN ('none', 'headers', 'basic', 'token', 'aws_sigv4', 'hmac_sha256')),
    test             boolean NOT NULL DEFAULT false,
    secret           bytea,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    deleted_at       timestamptz
);
CREATE INDEX credentials_by_organization ON credentials (organization_id, id);

CREATE TABLE webhooks (
    id               text PRIMARY KEY,
    organization_id  text NOT NULL REFERENCES organizations (id),
    name             text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    description      text NOT NULL DEFAULT '',
    events           text[] NOT NULL CHECK (cardinality(events) > 0),
    filter_actor     text,
    filter_team      text,
    environment      text NOT NULL CHECK (environment IN ('live', 'test')),
    active           boolean NOT NULL DEFAULT false,
    signing_secret   bytea NOT NULL,
    retry_delays_ms  bigint[],
    created_by       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    deleted_at       timestamptz
);
CREATE INDEX webhooks_by_organization ON webhooks (organization_id, id);
CREATE INDEX webhooks_routable ON webhooks (organization_id, environment) WHERE active AND deleted_at IS NULL;

CREATE TABLE endpoints (
    id               text PRIMARY KEY,
    webhook_id       text NOT NULL REFERENCES webhooks (id),
    organization_id  text NOT NULL REFERENCES organizations (id),
    position         integer NOT NULL,
    url              text NOT NULL,
    method           text NOT NULL CHECK (method IN ('POST', 'PUT', 'PATCH')),
    credential_id    text REFERENCES credentials (id),
    headers          jsonb NOT NULL DEFAULT '{}',
    created_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (webhook_id, position)
);

CREATE TABLE events (
    id               text PRIMARY KEY,
    organization_id  text NOT NULL REFERENCES organizations (id),
    message_id       text NOT NULL,
    event_type       text NOT NULL,
    environment      text NOT NULL CHECK (environment IN ('live', 'test')),
    occurred_at      timestamptz NOT NULL,
    received_at      timestamptz NOT NULL DEFAULT now(),
    actor            text,
    team             text,
    data             jsonb NOT NULL,
    -- Set once the router has created and published the event's deliveries.
    routed_at        timestamptz,
    UNIQUE (organization_id, message_id)
);
CREATE INDEX events_unrouted ON events (received_at) WHERE routed_at IS NULL;

CREATE TABLE deliveries (
    id                text PRIMARY KEY,
    event_id          text NOT NULL REFERENCES events (id),
    endpoint_id       text NOT NULL REFERENCES endpoints (id),
    webhook_id        text NOT NULL REFERENCES webhooks (id),
    organization_id   text NOT NULL REFERENCES organizations (id),
    status            text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'retrying', 'succeeded', 'failed')),
    attempt_count     integer NOT NULL DEFAULT 0,
    last_status_code  integer,
    last_error_kind   text,
    next_attempt_at   timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    completed_at      timestamptz,
    UNIQUE (event_id, endpoint_id)
);
CREATE INDEX deliveries_by_webhook ON deliveries (webhook_id, id DESC);
CREATE INDEX deliveries_open ON deliveries (updated_at) WHERE status IN ('pending', 'retrying');

CREATE TABLE attempts (
    delivery_id              text NOT NULL REFERENCES deliveries (id),
    attempt_number           integer NOT NULL CHECK (attempt_number > 0),
    trigger                  text NOT NULL DEFAULT 'scheduled' CHECK (trigger IN ('scheduled', 'manual')),
    started_at               timestamptz NOT NULL,
    duration_ms              integer NOT NULL,
    request_method           text NOT NULL,
    request_url              text NOT NULL,
    request_headers          jsonb NOT NULL,
    status_code              integer,
    response_headers         jsonb,
    response_body            text,
    response_body_truncated  boolean NOT NULL DEFAULT false,
    error_kind               text,
    error_message            text,
    PRIMARY KEY (delivery_id, attempt_number)
);
