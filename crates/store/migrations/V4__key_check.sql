-- A value sealed with secrets.key on first start. Every later start must open it, so a
-- wrong key fails at start-up instead of at the first delivery.
CREATE TABLE key_check (
    id      integer PRIMARY KEY CHECK (id = 1),
    sealed  bytea NOT NULL
);
