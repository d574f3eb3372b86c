//! Every statement of the metrics crate.

/// One batch of raw events, as parallel arrays (one round trip however many events).
pub const INSERT_EVENTS: &str = "
INSERT INTO metric_events
       (occurred_at, source, queue, kind, outcome, method, route, status, error, duration_us)
SELECT * FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::text[],
                     $6::text[], $7::text[], $8::int2[], $9::bool[], $10::int8[])";

/// Serialises rollups of the same hour (`$1` = hours since the epoch), so that two at once
/// cannot both delete the old rows and then both insert.
pub const LOCK_HOUR: &str = "SELECT pg_advisory_xact_lock(hashtext('metric_rollup'), $1::int)";

pub const DELETE_HOUR: &str = "DELETE FROM metric_hourly WHERE hour = $1";

/// The rollup of the hour `[$1, $2)`: per key, count, errors and `percentile_cont` p50/p95/p99
/// in milliseconds. Each key's durations are gathered into an array by a hash aggregate and only
/// those are sorted (one sort per key for all three percentiles): a plain `GROUP BY` with the
/// ordered-set aggregate first sorts every event of the hour by the five text key columns, which
/// measured twice as slow. Sent unprepared so the planner sees the bounds and prunes to the
/// day's partition.
pub const ROLLUP_HOUR: &str = "
INSERT INTO metric_hourly
       (hour, source, queue, kind, method, route, count, errors, p50_ms, p95_ms, p99_ms)
SELECT $1, source, queue, kind, method, route, n, errors,
       pct[1] / 1000.0, pct[2] / 1000.0, pct[3] / 1000.0
  FROM (SELECT source, queue, kind, method, route,
               count(*) AS n,
               count(*) FILTER (WHERE error) AS errors,
               array_agg(duration_us) AS durations
          FROM metric_events
         WHERE occurred_at >= $1 AND occurred_at < $2
         GROUP BY source, queue, kind, method, route) per_key,
       LATERAL (SELECT percentile_cont(ARRAY[0.5, 0.95, 0.99]::float8[])
                           WITHIN GROUP (ORDER BY d::float8) AS pct
                  FROM unnest(per_key.durations) d) p
RETURNING count";

pub const ENSURE_PARTITION: &str = "SELECT metric_events_ensure_partition($1::date)";

/// Rows of `GET /v1/metrics/hourly`; NULL filters match everything.
pub const SELECT_HOURLY: &str = "
SELECT hour, source, queue, kind, method, route, count, errors, p50_ms, p95_ms, p99_ms
  FROM metric_hourly
 WHERE hour >= $1 AND hour < $2
   AND ($3::text IS NULL OR source = $3)
   AND ($4::text IS NULL OR queue = $4)
   AND ($5::text IS NULL OR kind = $5)
 ORDER BY hour, source, queue NULLS LAST, kind NULLS LAST, route NULLS LAST, method NULLS LAST
 LIMIT $6";
