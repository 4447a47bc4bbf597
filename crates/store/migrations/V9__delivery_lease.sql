-- A worker leases a delivery before it sends the attempt it is due, and the lease goes
-- with the attempt's record: two copies of one job (a redelivery, the reconciliation
-- sweep, a recovery path) cannot both send. A lease outlives a worker that died holding
-- it only until `leased_until`, after which the job may be sent again.
ALTER TABLE deliveries ADD COLUMN leased_until timestamptz;
