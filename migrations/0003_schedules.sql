-- Scheduler state (SPEC §6): one row per cron entry. `last_fire_at` is the instant up to which
-- the entry's fire times have been handled (enqueued or deliberately skipped); a pass locks the
-- row (SELECT … FOR UPDATE), handles the fire times in (last_fire_at, now] and advances it in the
-- same transaction as the enqueue, so each fire time is handled exactly once however many
-- schedulers run. A new entry starts at the time it was first seen, so it does not fire for the past.
CREATE TABLE schedule_state (
    name          text        PRIMARY KEY,
    last_fire_at  timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now()
);
