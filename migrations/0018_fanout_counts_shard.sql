-- Inserted deliveries count in a shard of their own (issue #3, throughput).
--
-- Only the fan-out inserts deliveries, a slice of up to 10,000 at a time, and its statement's
-- counts went into the shard of its session (`pg_backend_pid() % 16`, migration 0011): a row of
-- `bulk_send_counts` it then held locked until the slice's transaction committed with its batch
-- jobs, a quarter of a second for a large slice. A claim or an outcome write of the same send
-- whose session fell on the same shard waited for it — and with it every message of the worker
-- held by the unrecorded limit. Ten pooled connections and the outcome writer's over 16 shards
-- nearly always meet somewhere. Inserts now count in shard 16, which no update or delete uses;
-- the fan-out of one send runs one slice at a time, so it never waits on itself there. Reads
-- sum all of a send's shards, so they see the same totals.
CREATE OR REPLACE FUNCTION deliveries_apply_counts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO bulk_send_counts AS c (send_id, shard, total, queued, sending, sent,
                                           suppressed, failed, bounced, cancelled)
        SELECT * FROM (
        SELECT send_id, 16::smallint AS shard,
               count(*)::int AS total,
               coalesce(sum(delta) FILTER (WHERE status = 'queued'), 0)::int AS queued,
               coalesce(sum(delta) FILTER (WHERE status = 'sending'), 0)::int AS sending,
               coalesce(sum(delta) FILTER (WHERE status = 'sent'), 0)::int AS sent,
               coalesce(sum(delta) FILTER (WHERE status = 'suppressed'), 0)::int AS suppressed,
               coalesce(sum(delta) FILTER (WHERE status = 'failed'), 0)::int AS failed,
               coalesce(sum(delta) FILTER (WHERE status = 'bounced'), 0)::int AS bounced,
               coalesce(sum(delta) FILTER (WHERE status = 'cancelled'), 0)::int AS cancelled
          FROM (SELECT send_id, status, 1 AS delta FROM new_rows) changes GROUP BY send_id
        ) d ORDER BY d.send_id
        ON CONFLICT (send_id, shard) DO UPDATE
           SET total = c.total + EXCLUDED.total, queued = c.queued + EXCLUDED.queued,
               sending = c.sending + EXCLUDED.sending, sent = c.sent + EXCLUDED.sent,
               suppressed = c.suppressed + EXCLUDED.suppressed,
               failed = c.failed + EXCLUDED.failed, bounced = c.bounced + EXCLUDED.bounced,
               cancelled = c.cancelled + EXCLUDED.cancelled;
    ELSE
        INSERT INTO bulk_send_counts AS c (send_id, shard, total, queued, sending, sent,
                                           suppressed, failed, bounced, cancelled)
        SELECT * FROM (
        SELECT send_id, (pg_backend_pid() % 16)::smallint AS shard,
               0 AS total,
               coalesce(sum(delta) FILTER (WHERE status = 'queued'), 0)::int AS queued,
               coalesce(sum(delta) FILTER (WHERE status = 'sending'), 0)::int AS sending,
               coalesce(sum(delta) FILTER (WHERE status = 'sent'), 0)::int AS sent,
               coalesce(sum(delta) FILTER (WHERE status = 'suppressed'), 0)::int AS suppressed,
               coalesce(sum(delta) FILTER (WHERE status = 'failed'), 0)::int AS failed,
               coalesce(sum(delta) FILTER (WHERE status = 'bounced'), 0)::int AS bounced,
               coalesce(sum(delta) FILTER (WHERE status = 'cancelled'), 0)::int AS cancelled
          FROM (SELECT send_id, status, 1 AS delta FROM new_rows
                UNION ALL
                SELECT send_id, status, -1 FROM old_rows) changes GROUP BY send_id
        ) d
         WHERE (d.queued, d.sending, d.sent, d.suppressed, d.failed, d.bounced, d.cancelled)
               <> (0, 0, 0, 0, 0, 0, 0)
         ORDER BY d.send_id
        ON CONFLICT (send_id, shard) DO UPDATE
           SET total = c.total + EXCLUDED.total, queued = c.queued + EXCLUDED.queued,
               sending = c.sending + EXCLUDED.sending, sent = c.sent + EXCLUDED.sent,
               suppressed = c.suppressed + EXCLUDED.suppressed,
               failed = c.failed + EXCLUDED.failed, bounced = c.bounced + EXCLUDED.bounced,
               cancelled = c.cancelled + EXCLUDED.cancelled;
    END IF;
    RETURN NULL;
END
$$;
