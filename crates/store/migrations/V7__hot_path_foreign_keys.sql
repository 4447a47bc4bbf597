-- Every inserted row of a table with a foreign key makes PostgreSQL look up and lock
-- (FOR KEY SHARE) the parent row. On the hot path these checks cost more than the
-- inserts, and guard nothing the statements do not already check: the event insert
-- joins `organizations`, and the delivery insert joins the events it marks routed
-- (under the organisation the route message names) and takes its webhook and
-- organisation from the endpoint's. Parents are never deleted (webhooks, endpoints
-- and credentials are removed by marking them). deliveries.endpoint_id and
-- attempts.delivery_id keep theirs.
ALTER TABLE events DROP CONSTRAINT events_organization_id_fkey;
ALTER TABLE deliveries
    DROP CONSTRAINT deliveries_event_id_fkey,
    DROP CONSTRAINT deliveries_webhook_id_fkey,
    DROP CONSTRAINT deliveries_organization_id_fkey;
