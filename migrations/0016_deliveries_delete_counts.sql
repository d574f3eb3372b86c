-- Progress counters follow deleted deliveries too. The triggers of 0011 count inserts and
-- updates only, so erasing a guest (GDPR: `DELETE FROM deliveries WHERE address_hash = …`) left
-- their delivery in its status's counter: a `queued` one kept the send from ever being `done`.
-- Now each statement that deletes deliveries takes them out of `total` and of their status, in
-- this session's shard (as 0011 adds them). A send deleted with its deliveries (the cascade from
-- `bulk_sends`) loses its counter rows too, so its deliveries are not counted out.
CREATE FUNCTION deliveries_remove_counts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO bulk_send_counts AS c (send_id, shard, total, queued, sending, sent,
                                       suppressed, failed, bounced, cancelled)
    SELECT * FROM (
    SELECT send_id, (pg_backend_pid() % 16)::smallint AS shard,
           -count(*)::int AS total,
           -count(*) FILTER (WHERE status = 'queued')::int AS queued,
           -count(*) FILTER (WHERE status = 'sending')::int AS sending,
           -count(*) FILTER (WHERE status = 'sent')::int AS sent,
           -count(*) FILTER (WHERE status = 'suppressed')::int AS suppressed,
           -count(*) FILTER (WHERE status = 'failed')::int AS failed,
           -count(*) FILTER (WHERE status = 'bounced')::int AS bounced,
           -count(*) FILTER (WHERE status = 'cancelled')::int AS cancelled
      FROM gone GROUP BY send_id
    ) d
     WHERE EXISTS (SELECT 1 FROM bulk_sends b WHERE b.id = d.send_id)
     ORDER BY d.send_id
    ON CONFLICT (send_id, shard) DO UPDATE
       SET total = c.total + EXCLUDED.total, queued = c.queued + EXCLUDED.queued,
           sending = c.sending + EXCLUDED.sending, sent = c.sent + EXCLUDED.sent,
           suppressed = c.suppressed + EXCLUDED.suppressed,
           failed = c.failed + EXCLUDED.failed, bounced = c.bounced + EXCLUDED.bounced,
           cancelled = c.cancelled + EXCLUDED.cancelled;
    RETURN NULL;
END
$$;

CREATE TRIGGER deliveries_count_delete
    AFTER DELETE ON deliveries
    REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION deliveries_remove_counts();
