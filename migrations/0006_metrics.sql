-- Metrics (SPEC §5.4): one raw event per job execution and per API request, and their hourly
-- rollup. See docs/operations.md ("Metrics") for the model.

-- Raw events, partitioned by day (UTC) on `occurred_at`:
-- * retention drops whole expired partitions (no row-by-row DELETE, no dead rows to vacuum);
-- * the rollup of one hour reads one partition through its BRIN index.
-- `metric_events_ensure_partition` creates a day's partition; the rollup job keeps a few days
-- ahead. Events of a day without a partition land in the default partition, whose rows are
-- moved into the day's partition when it is created.
CREATE TABLE metric_events (
    occurred_at  timestamptz NOT NULL,
    -- 'job': queue, kind, outcome are set; 'api': method, route (template), status are set.
    source       text        NOT NULL CHECK (source IN ('job', 'api')),
    queue        text,
    kind         text,
    outcome      text,
    method       text,
    route        text,
    status       smallint,
    -- job: the attempt failed; api: status >= 500.
    error        boolean     NOT NULL,
    duration_us  bigint      NOT NULL CHECK (duration_us >= 0)
) PARTITION BY RANGE (occurred_at);

CREATE TABLE metric_events_default PARTITION OF metric_events DEFAULT;

-- Events are appended in about time order, so a BRIN index (a few pages per partition, nearly
-- free per insert) narrows an hour's scan to the blocks holding that hour.
CREATE INDEX metric_events_occurred_at_brin ON metric_events USING brin (occurred_at);

-- Create the partition of `day` (UTC) unless it exists, moving any rows of that day out of the
-- default partition first (attaching would fail while they are there). Returns true when it
-- created the partition.
CREATE FUNCTION metric_events_ensure_partition(day date) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    name text := format('metric_events_p%s', to_char(day, 'YYYYMMDD'));
    lo   timestamptz := day::timestamp AT TIME ZONE 'UTC';
    hi   timestamptz := (day + 1)::timestamp AT TIME ZONE 'UTC';
BEGIN
    IF to_regclass(name) IS NOT NULL THEN
        RETURN false;
    END IF;
    -- Two creators of the same day at once: the second waits here, then finds it done.
    PERFORM pg_advisory_xact_lock(hashtext('metric_events_partition'), hashtext(name));
    IF to_regclass(name) IS NOT NULL THEN
        RETURN false;
    END IF;
    EXECUTE format('CREATE TABLE %I (LIKE metric_events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', name);
    EXECUTE format(
        'WITH moved AS (DELETE FROM metric_events_default WHERE occurred_at >= $1 AND occurred_at < $2 RETURNING *)
         INSERT INTO %I SELECT * FROM moved', name) USING lo, hi;
    EXECUTE format('ALTER TABLE metric_events ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                   name, lo, hi);
    RETURN true;
END $$;

-- Remove raw events older than `days` days: drop every daily partition that lies wholly before
-- the cutoff (so a day goes at once, up to a day after its last event expired), then delete at
-- most `batch` expired rows of the default partition. Returns the number of rows removed; the
-- retention job calls it until it returns less than `batch`. Concurrent calls do not block:
-- the second finds the lock taken and removes nothing.
CREATE FUNCTION metric_events_purge(days integer, batch bigint) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    cutoff  timestamptz := now() - make_interval(days => days);
    part    record;
    n       bigint;
    removed bigint := 0;
BEGIN
    IF NOT pg_try_advisory_xact_lock(hashtext('metric_events_purge')) THEN
        RETURN 0;
    END IF;
    -- Dropping a partition locks the parent briefly; rather fail (and retry later) than queue
    -- the event writers behind a long-running reader.
    PERFORM set_config('lock_timeout', '5s', true);
    FOR part IN
        SELECT c.oid::regclass AS rel,
               (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'TO \(''([^'']+)''\)'))[1]::timestamptz AS upper
          FROM pg_inherits i
          JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = 'metric_events'::regclass
           AND c.oid <> 'metric_events_default'::regclass
    LOOP
        IF part.upper <= cutoff THEN
            EXECUTE format('SELECT count(*) FROM %s', part.rel) INTO n;
            EXECUTE format('DROP TABLE %s', part.rel);
            removed := removed + n;
        END IF;
    END LOOP;
    DELETE FROM metric_events_default
     WHERE ctid = ANY(ARRAY(
           SELECT ctid FROM metric_events_default
            WHERE occurred_at < cutoff
            LIMIT batch
              FOR UPDATE SKIP LOCKED));
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN removed + n;
END $$;

-- Yesterday to three days ahead exist from the start; the rollup job creates the next ones.
SELECT metric_events_ensure_partition(d::date)
  FROM generate_series(current_date - 1, current_date + 3, interval '1 day') d;

-- One row per hour and key: (source, queue, kind) for jobs, (source, method, route) for API
-- requests; the other columns are NULL. Durations in milliseconds; percentiles are
-- `percentile_cont` (linear interpolation between the two nearest events).
CREATE TABLE metric_hourly (
    hour         timestamptz NOT NULL,
    source       text        NOT NULL CHECK (source IN ('job', 'api')),
    queue        text,
    kind         text,
    method       text,
    route        text,
    count        bigint      NOT NULL,
    errors       bigint      NOT NULL,
    p50_ms       float8      NOT NULL,
    p95_ms       float8      NOT NULL,
    p99_ms       float8      NOT NULL,
    rolled_up_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT metric_hourly_key UNIQUE NULLS NOT DISTINCT (hour, source, queue, kind, method, route)
);
