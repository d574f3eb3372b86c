-- Deliveries no longer check their send by foreign key (issue #3, throughput).
--
-- The foreign key made PostgreSQL look the send up once per inserted delivery (a `FOR KEY SHARE`
-- probe of `bulk_sends` queued as an after-trigger event per row): a third of the fan-out's
-- insert time, ~150 → ~100 ms for a slice of 5,000 (`docs/benchmarks.md`), on the machine's two
-- cores shared with the sending. The reference still holds by construction: deliveries are only
-- inserted by the fan-out, whose `INSERT … SELECT` reads them from the send's own row while it
-- holds that row locked (`FOR NO KEY UPDATE`, which a `DELETE` of the send waits for).
--
-- What the key did on delete (`ON DELETE CASCADE`) a trigger does now: deleting a send deletes
-- its deliveries first, while the send is still there, so their own triggers count them out of
-- the send's counters and take their bodies along, as before; the counters then go with the
-- send (their foreign key stays: few rows, written rarely).
ALTER TABLE deliveries DROP CONSTRAINT deliveries_send_id_fkey;

CREATE FUNCTION bulk_sends_delete_deliveries() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM deliveries WHERE send_id = OLD.id;
    RETURN OLD;
END
$$;

CREATE TRIGGER bulk_sends_delete_deliveries
    BEFORE DELETE ON bulk_sends
    FOR EACH ROW EXECUTE FUNCTION bulk_sends_delete_deliveries();
