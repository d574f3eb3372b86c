-- Pools and pre-scaling (SPEC §6). A pool's bounds and base size per worker process, the size
-- the rules last asked for, the replicas published for Kubernetes/KEDA, an operator override
-- with its expiry and reason, and why the pool has its current size. `concurrency` (0001) stays
-- the size workers apply live; the scaling evaluation writes it.
ALTER TABLE pools
    ADD COLUMN min_size          integer     NOT NULL DEFAULT 0 CHECK (min_size >= 0),
    -- Filled from `concurrency` on insert when not given (trigger below), so code that only
    -- knows (queue, concurrency) keeps creating pools whose rules leave that size as it is.
    ADD COLUMN max_size          integer     CHECK (max_size >= 0),
    ADD COLUMN base_size         integer     CHECK (base_size >= 0),
    -- What the rules (or the override) asked for at the last evaluation, before cooldowns.
    ADD COLUMN desired           integer     CHECK (desired >= 0),
    -- Worker processes (Kubernetes replicas) the pool's demand needs (docs/operations.md).
    ADD COLUMN desired_replicas  integer     NOT NULL DEFAULT 1 CHECK (desired_replicas >= 0),
    ADD COLUMN override_size     integer     CHECK (override_size >= 0),
    ADD COLUMN override_until    timestamptz,
    ADD COLUMN override_reason   text,
    -- The reasons of the current size, as the rules report them (`Reason` in the scheduler).
    ADD COLUMN reasons           jsonb       NOT NULL DEFAULT '[]',
    -- When the size last changed; cooldowns count from here. NULL: never changed by scaling.
    ADD COLUMN changed_at        timestamptz,
    ADD CONSTRAINT pools_override_complete CHECK (
        (override_size IS NULL) = (override_until IS NULL)
        AND (override_size IS NULL) = (override_reason IS NULL));

UPDATE pools SET base_size = concurrency, max_size = concurrency;

CREATE FUNCTION wedsync_pool_defaults() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.base_size := coalesce(NEW.base_size, NEW.concurrency);
    NEW.max_size := coalesce(NEW.max_size, greatest(NEW.concurrency, NEW.base_size));
    RETURN NEW;
END $$;

CREATE TRIGGER pools_defaults BEFORE INSERT ON pools
    FOR EACH ROW EXECUTE FUNCTION wedsync_pool_defaults();

ALTER TABLE pools ALTER COLUMN max_size SET NOT NULL, ALTER COLUMN base_size SET NOT NULL;

-- Every change of a pool's size, with its reasons (`GET /v1/pools` shows the recent ones).
CREATE TABLE pool_changes (
    id             bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue          text        NOT NULL,
    at             timestamptz NOT NULL,
    from_size      integer     NOT NULL,
    to_size        integer     NOT NULL,
    from_replicas  integer     NOT NULL,
    to_replicas    integer     NOT NULL,
    reasons        jsonb       NOT NULL,
    source         text        NOT NULL CHECK (source IN ('rules', 'override', 'operator'))
);

CREATE INDEX pool_changes_queue_at_idx ON pool_changes (queue, at DESC);

-- One row per pool for KEDA's postgresql scaler, e.g.
--   SELECT desired_replicas FROM wedsync_scaling WHERE queue = 'photos'
-- A paused queue needs no worker.
CREATE VIEW wedsync_scaling AS
    SELECT queue,
           CASE WHEN paused THEN 0 ELSE desired_replicas END AS desired_replicas,
           concurrency,
           paused
      FROM pools;
