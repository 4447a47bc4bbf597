-- An event's data is kept as the text it was published in. `jsonb` reorders keys,
-- drops duplicate ones and normalises numbers (`-0` becomes `0`, `1E2` becomes `100`);
-- `json` checks its input is JSON and stores it verbatim, so what is delivered is what
-- was published. Nothing queries into the data, so nothing needs jsonb's operators.
-- (Rewrites every event partition: on a large table, run it in a quiet hour.)
ALTER TABLE events ALTER COLUMN data TYPE json USING data::json;
