-- Rendered bodies of sent deliveries go to a table of their own (issue #3, throughput).
--
-- Recording a `sent` outcome used to write the bodies (~1 KB) into the delivery's row: the row
-- outgrew its page, so every outcome was a full new row version with an entry in each of the
-- table's indexes, and `sent_at` (in the retention index of 0010) changed anyway. Now the outcome
-- update changes no indexed column and barely grows the row, so it is made in place (HOT, see
-- 0014), and the bodies are one insert here: 22 → 13 buffer reads per message and 40 % less time
-- for the statement (docs/benchmarks.md, "Second pass on the database's share").
--
-- No foreign key: its check would lock the delivery's row for every body inserted (1,000 writes
-- took 39 ms with it, 29 without, 47 before). Bodies follow their delivery out instead by the
-- trigger below, whatever deletes it (GDPR erasure, a cascade from `bulk_sends`); the outcome
-- write inserts a body only for the row it has just updated, in the same statement.
CREATE TABLE delivery_bodies (
    delivery_id  bigint      PRIMARY KEY,
    sent_at      timestamptz NOT NULL,
    subject      text,
    body_text    text,
    body_html    text
);

-- The `message_bodies` retention policy deletes the bodies of deliveries sent long ago, oldest
-- first; inserts come in `sent_at` order, onto the index's rightmost page.
CREATE INDEX delivery_bodies_sent_at_idx ON delivery_bodies (sent_at);

CREATE FUNCTION deliveries_delete_bodies() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM delivery_bodies b USING gone WHERE b.delivery_id = gone.id;
    RETURN NULL;
END
$$;

CREATE TRIGGER deliveries_delete_bodies
    AFTER DELETE ON deliveries
    REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION deliveries_delete_bodies();

-- The old columns stay for now (expand, then contract in a later release): during a rolling
-- upgrade, workers of the previous release keep writing bodies there, and must not fail to
-- record what they sent (a worker that cannot record stops, and what it sent unrecorded would
-- be sent again). Bodies already there stay until the retention policy clears them, as before.
-- Their index changes from `sent_at` (which every outcome sets, so no update could be HOT) to
-- `id` (which never changes); the current writer leaves the columns NULL, so it changes neither
-- the key nor the predicate of this index.
DROP INDEX deliveries_rendered_sent_at_idx;
CREATE INDEX deliveries_legacy_bodies_idx ON deliveries (id)
    WHERE rendered_subject IS NOT NULL OR rendered_text IS NOT NULL OR rendered_html IS NOT NULL;
