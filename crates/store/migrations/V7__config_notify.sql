-- Routers and workers keep webhooks, endpoints and credentials in memory. Any change
-- that could alter a delivery notifies them on the `hookline_config` channel, at
-- commit, so a deactivation or a new URL takes effect at once. Endpoints are also
-- updated on the delivery path (consecutive_failures), which must not empty the caches:
-- their updates notify only when a column a delivery uses changed.
CREATE FUNCTION hookline_config_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('hookline_config', '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER webhooks_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON webhooks
    FOR EACH STATEMENT EXECUTE FUNCTION hookline_config_changed();
CREATE TRIGGER credentials_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON credentials
    FOR EACH STATEMENT EXECUTE FUNCTION hookline_config_changed();
CREATE TRIGGER endpoints_added_or_deleted AFTER INSERT OR DELETE OR TRUNCATE ON endpoints
    FOR EACH STATEMENT EXECUTE FUNCTION hookline_config_changed();
CREATE TRIGGER endpoints_changed AFTER UPDATE ON endpoints
    FOR EACH ROW
    WHEN ((OLD.webhook_id, OLD.position, OLD.url, OLD.method, OLD.credential_id, OLD.headers, OLD.removed_at)
          IS DISTINCT FROM
          (NEW.webhook_id, NEW.position, NEW.url, NEW.method, NEW.credential_id, NEW.headers, NEW.removed_at))
    EXECUTE FUNCTION hookline_config_changed();
