-- What the host platform decides per organisation: whether it may use webhooks at all
-- (offered "only to customers who have expressed interest": off, no webhook can be
-- created or activated and no event is routed to its webhooks), and its deletion (its
-- keys are revoked and its webhooks deactivated; its history stays readable to nobody
-- through the API, and is removed by retention like any other).
ALTER TABLE organizations
    ADD COLUMN webhooks_enabled boolean NOT NULL DEFAULT true,
    ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN deleted_at timestamptz;

-- Routers cache routable webhooks: turning an organisation's webhooks off must reach
-- them at once, as any webhook change does.
CREATE TRIGGER organizations_changed AFTER UPDATE OR DELETE OR TRUNCATE ON organizations
    FOR EACH STATEMENT EXECUTE FUNCTION hookline_config_changed();
