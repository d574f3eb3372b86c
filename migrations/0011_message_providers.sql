-- Bulk messages, second part (issue #3): SMS, cancelling deliveries, providers' shared state.

-- SMS sends have no subject and no HTML part.
ALTER TABLE bulk_sends ALTER COLUMN subject_template DROP NOT NULL;

-- Deliveries per batch job, fixed when the send is created: a resume must find the same batches
-- (their jobs' unique keys) that the fan-out made, whatever a later release defaults to.
ALTER TABLE bulk_sends ADD COLUMN batch_size integer NOT NULL DEFAULT 50 CHECK (batch_size > 0);
ALTER TABLE bulk_sends ADD COLUMN paused_at timestamptz;
ALTER TABLE bulk_sends ADD COLUMN cancelled_at timestamptz;

-- A cancelled send leaves what was not sent yet `cancelled`.
ALTER TABLE deliveries DROP CONSTRAINT deliveries_status_check;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_status_check
    CHECK (status IN ('queued', 'sending', 'sent', 'suppressed', 'failed', 'bounced', 'cancelled'));
-- Claiming a delivery (`queued` → `sending`) changes no indexed column, so the row is updated in
-- place on its page (HOT) instead of gaining a new entry in every index, as long as the page has
-- room: hence the free space, and no index on `status` (a send's deliveries are listed by
-- ordinal, filtered by status, through `deliveries_send_ordinal_key`). Measured: a claim of 50
-- deliveries 1.4 ms → 0.9 ms (docs/benchmarks.md).
DROP INDEX deliveries_send_status_idx;
ALTER TABLE deliveries SET (fillfactor = 70);

-- Which provider accepted the message (`smtp`, `smtp_secondary`, `sms`, …).
ALTER TABLE deliveries ADD COLUMN provider text;
-- Unsubscribe links carry a signed, self-contained token now (`messages::unsubscribe`); nothing
-- per delivery needs storing.
DROP INDEX deliveries_unsubscribe_token_idx;
ALTER TABLE deliveries DROP COLUMN unsubscribe_token;

-- Progress counters, sharded. Migration 0009 kept them on the send's row, which every
-- statement changing deliveries then had to lock until its commit: the batch jobs of one send
-- (and their claims and outcome writes) queued behind each other on that one row, and each
-- message waited for all of them before its `sent` was recorded — a longer duplicate window and
-- a lower rate. Now each statement adds its changes to one of 16 rows of the send, chosen by
-- the session, so concurrent writers rarely meet; a read sums at most 16 rows.
CREATE TABLE bulk_send_counts (
    send_id     uuid     NOT NULL REFERENCES bulk_sends (id) ON DELETE CASCADE,
    shard       smallint NOT NULL,
    total       integer  NOT NULL DEFAULT 0,
    queued      integer  NOT NULL DEFAULT 0,
    sending     integer  NOT NULL DEFAULT 0,
    sent        integer  NOT NULL DEFAULT 0,
    suppressed  integer  NOT NULL DEFAULT 0,
    failed      integer  NOT NULL DEFAULT 0,
    bounced     integer  NOT NULL DEFAULT 0,
    cancelled   integer  NOT NULL DEFAULT 0,
    PRIMARY KEY (send_id, shard)
);

INSERT INTO bulk_send_counts (send_id, shard, total, queued, sending, sent, suppressed, failed,
                              bounced)
SELECT id, 0, total, queued, sending, sent, suppressed, failed, bounced FROM bulk_sends;

ALTER TABLE bulk_sends DROP COLUMN total, DROP COLUMN queued, DROP COLUMN sending,
    DROP COLUMN sent, DROP COLUMN suppressed, DROP COLUMN failed, DROP COLUMN bounced;

-- The sums of a send's shards.
CREATE VIEW bulk_send_totals AS
SELECT send_id,
       sum(total)::int AS total, sum(queued)::int AS queued, sum(sending)::int AS sending,
       sum(sent)::int AS sent, sum(suppressed)::int AS suppressed, sum(failed)::int AS failed,
       sum(bounced)::int AS bounced, sum(cancelled)::int AS cancelled
  FROM bulk_send_counts GROUP BY send_id;

-- Add a statement's changes into this session's shard: for inserts +1 per new row in its
-- status, for updates +1 in the new status and -1 in the old one, summed per send (sends in
-- order, so that two statements touching the same sends lock their shards alike).
CREATE OR REPLACE FUNCTION deliveries_apply_counts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO bulk_send_counts AS c (send_id, shard, total, queued, sending, sent,
                                           suppressed, failed, bounced, cancelled)
        SELECT * FROM (
        SELECT send_id, (pg_backend_pid() % 16)::smallint AS shard,
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

-- A send-rate limit per provider shared by every worker process (GCRA): `next_slot_at` is the
-- earliest time the next message may go. A process reserves n slots with one UPDATE that moves
-- it on by n intervals, then sends each message at its slot, so all processes together never
-- exceed the rate, whatever their number.
CREATE TABLE provider_rate_limits (
    provider      text             PRIMARY KEY,
    per_second    double precision NOT NULL CHECK (per_second > 0),
    next_slot_at  timestamptz      NOT NULL DEFAULT now(),
    updated_at    timestamptz      NOT NULL DEFAULT now()
);

-- Circuit-breaker state as each worker process last reported it (every few seconds and on every
-- change), for `/metrics` and `GET /v1/queues`. Breakers themselves live in the processes; a
-- row not refreshed for a while belongs to a process that is gone and is ignored, then pruned.
CREATE TABLE provider_breakers (
    provider              text        NOT NULL,
    process_id            text        NOT NULL,
    channel               text        NOT NULL CHECK (channel IN ('email', 'sms')),
    role                  text        NOT NULL CHECK (role IN ('primary', 'secondary')),
    state                 text        NOT NULL CHECK (state IN ('closed', 'open', 'half_open')),
    consecutive_failures  integer     NOT NULL DEFAULT 0,
    failures              bigint      NOT NULL DEFAULT 0,
    successes             bigint      NOT NULL DEFAULT 0,
    rejected              bigint      NOT NULL DEFAULT 0,
    opened_at             timestamptz,
    updated_at            timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, process_id)
);

-- Keys the system makes for itself when none is configured (the embedded default), e.g. the
-- HMAC key of unsubscribe tokens: created once, shared by every process on this database.
CREATE TABLE signing_keys (
    name        text        PRIMARY KEY,
    secret      bytea       NOT NULL CHECK (length(secret) >= 32),
    created_at  timestamptz NOT NULL DEFAULT now()
);
