-- Bulk messages, second part (issue #3): SMS, cancelling deliveries, providers' shared state.

-- SMS sends have no subject and no HTML part.
ALTER TABLE bulk_sends ALTER COLUMN subject_template DROP NOT NULL;

-- Deliveries per batch job, fixed when the send is created: a resume must find the same batches
-- (their jobs' unique keys) that the fan-out made, whatever a later release defaults to.
ALTER TABLE bulk_sends ADD COLUMN batch_size integer NOT NULL DEFAULT 50 CHECK (batch_size > 0);
ALTER TABLE bulk_sends ADD COLUMN cancelled integer NOT NULL DEFAULT 0;
ALTER TABLE bulk_sends ADD COLUMN paused_at timestamptz;
ALTER TABLE bulk_sends ADD COLUMN cancelled_at timestamptz;

-- A cancelled send leaves what was not sent yet `cancelled`.
ALTER TABLE deliveries DROP CONSTRAINT deliveries_status_check;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_status_check
    CHECK (status IN ('queued', 'sending', 'sent', 'suppressed', 'failed', 'bounced', 'cancelled'));
-- Which provider accepted the message (`smtp`, `smtp_secondary`, `sms`, …).
ALTER TABLE deliveries ADD COLUMN provider text;
-- Unsubscribe links carry a signed, self-contained token now (`messages::unsubscribe`); nothing
-- per delivery needs storing.
DROP INDEX deliveries_unsubscribe_token_idx;
ALTER TABLE deliveries DROP COLUMN unsubscribe_token;

CREATE OR REPLACE FUNCTION deliveries_apply_counts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        UPDATE bulk_sends b
           SET total = b.total + d.n,
               queued = b.queued + d.queued, sending = b.sending + d.sending,
               sent = b.sent + d.sent, suppressed = b.suppressed + d.suppressed,
               failed = b.failed + d.failed, bounced = b.bounced + d.bounced,
               cancelled = b.cancelled + d.cancelled,
               updated_at = now()
          FROM (SELECT send_id, count(*) AS n,
                       count(*) FILTER (WHERE status = 'queued') AS queued,
                       count(*) FILTER (WHERE status = 'sending') AS sending,
                       count(*) FILTER (WHERE status = 'sent') AS sent,
                       count(*) FILTER (WHERE status = 'suppressed') AS suppressed,
                       count(*) FILTER (WHERE status = 'failed') AS failed,
                       count(*) FILTER (WHERE status = 'bounced') AS bounced,
                       count(*) FILTER (WHERE status = 'cancelled') AS cancelled
                  FROM new_rows GROUP BY send_id ORDER BY send_id) d
         WHERE b.id = d.send_id;
    ELSE
        UPDATE bulk_sends b
           SET queued = b.queued + d.queued, sending = b.sending + d.sending,
               sent = b.sent + d.sent, suppressed = b.suppressed + d.suppressed,
               failed = b.failed + d.failed, bounced = b.bounced + d.bounced,
               cancelled = b.cancelled + d.cancelled,
               updated_at = now()
          FROM (SELECT send_id,
                       coalesce(sum(delta) FILTER (WHERE status = 'queued'), 0) AS queued,
                       coalesce(sum(delta) FILTER (WHERE status = 'sending'), 0) AS sending,
                       coalesce(sum(delta) FILTER (WHERE status = 'sent'), 0) AS sent,
                       coalesce(sum(delta) FILTER (WHERE status = 'suppressed'), 0) AS suppressed,
                       coalesce(sum(delta) FILTER (WHERE status = 'failed'), 0) AS failed,
                       coalesce(sum(delta) FILTER (WHERE status = 'bounced'), 0) AS bounced,
                       coalesce(sum(delta) FILTER (WHERE status = 'cancelled'), 0) AS cancelled
                  FROM (SELECT send_id, status, 1 AS delta FROM new_rows
                        UNION ALL
                        SELECT send_id, status, -1 AS delta FROM old_rows) c
                 GROUP BY send_id
                 ORDER BY send_id) d
         WHERE b.id = d.send_id
           AND (d.queued, d.sending, d.sent, d.suppressed, d.failed, d.bounced, d.cancelled)
               <> (0, 0, 0, 0, 0, 0, 0);
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
