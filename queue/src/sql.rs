//! Every SQL statement of the queue core, in one place to read top to bottom.
//!
//! Hot path per job: one INSERT (enqueue), one UPDATE inside a batched claim, and one
//! DELETE…INSERT inside a batched completion that moves the row to `jobs_finished`.

/// Columns of `jobs` as decoded into [`crate::JobRow`].
macro_rules! job_columns {
    () => {
        "id, queue, kind, args, state, priority, attempt, max_attempts, scheduled_at, created_at, \
         attempted_at, attempted_by, errors, unique_key, org_id"
    };
}

/// Bulk insert from parallel arrays; rows whose unique key is taken by an unfinished job are skipped.
pub const ENQUEUE_MANY: &str = r#"
INSERT INTO jobs (queue, kind, args, priority, max_attempts, scheduled_at, state, unique_key, org_id)
SELECT t.queue, t.kind, t.args, t.priority, t.max_attempts, coalesce(t.scheduled_at, now()),
       CASE WHEN t.scheduled_at > now() THEN 'scheduled' ELSE 'available' END,
       t.unique_key, t.org_id
  FROM unnest($1::text[], $2::text[], $3::jsonb[], $4::smallint[], $5::int[], $6::timestamptz[],
              $7::text[], $8::text[])
       AS t(queue, kind, args, priority, max_attempts, scheduled_at, unique_key, org_id)
ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL DO NOTHING
RETURNING id, unique_key
"#;

/// The id of the unfinished job holding each unique key.
pub const IDS_BY_UNIQUE_KEY: &str =
    "SELECT id, unique_key FROM jobs WHERE unique_key = ANY($1::text[])";

/// Claim up to $2 available jobs of queue $1 for worker $3, in one short statement. The ids are
/// collected into an array so that the update is a primary-key lookup in every plan: as a join,
/// PostgreSQL's generic plan for this prepared statement turned into a sequential scan of `jobs`.
pub const CLAIM_BATCH: &str = concat!(
    r#"
UPDATE jobs j
   SET state = 'running', attempt = j.attempt + 1, attempted_at = now(), attempted_by = $3
 WHERE j.id = ANY (ARRAY(
    SELECT id FROM jobs
     WHERE state = 'available' AND queue = $1 AND scheduled_at <= now()
     ORDER BY priority, scheduled_at, id
     LIMIT $2
     FOR UPDATE SKIP LOCKED
 ))
RETURNING "#,
    "j.id, j.queue, j.kind, j.args, j.state, j.priority, j.attempt, j.max_attempts, j.scheduled_at, \
     j.created_at, j.attempted_at, j.attempted_by, j.errors, j.unique_key, j.org_id"
);

/// Move the given running jobs of worker $3 to `jobs_finished` as completed, with their results.
/// The worker guard makes a late completion of a rescued (and re-claimed) job a no-op.
pub const COMPLETE_BATCH: &str = r#"
WITH done AS (
    DELETE FROM jobs WHERE id = ANY($1::bigint[]) AND state = 'running' AND attempted_by = $3
    RETURNING *
), results AS (
    SELECT DISTINCT ON (t.id) * FROM unnest($1::bigint[], $2::jsonb[]) AS t(id, result)
     WHERE t.result IS NOT NULL
)
INSERT INTO jobs_finished (id, queue, kind, args, state, priority, attempt, max_attempts, scheduled_at,
                           created_at, attempted_at, attempted_by, errors, unique_key, org_id, result)
SELECT d.id, d.queue, d.kind, d.args, 'completed', d.priority, d.attempt, d.max_attempts, d.scheduled_at,
       d.created_at, d.attempted_at, d.attempted_by, d.errors, d.unique_key, d.org_id, r.result
  FROM done d LEFT JOIN results r ON r.id = d.id
"#;

/// A failed attempt that will be retried: back to `retryable` (or straight to `available` when
/// the delay is zero) with the error appended to the history.
pub const FAIL_RETRY: &str = r#"
UPDATE jobs
   SET state = CASE WHEN $3::float8 <= 0 THEN 'available' ELSE 'retryable' END,
       scheduled_at = now() + make_interval(secs => $3::float8),
       errors = errors || jsonb_build_array($4::jsonb),
       attempted_by = NULL
 WHERE id = $1 AND state = 'running' AND attempted_by = $2
"#;

/// Finalise a running job of worker $2 (discarded or cancelled) with its last error.
pub const FINALIZE_RUNNING: &str = r#"
WITH done AS (
    DELETE FROM jobs WHERE id = $1 AND state = 'running' AND attempted_by = $2 RETURNING *
)
INSERT INTO jobs_finished (id, queue, kind, args, state, priority, attempt, max_attempts, scheduled_at,
                           created_at, attempted_at, attempted_by, errors, unique_key, org_id)
SELECT id, queue, kind, args, $3, priority, attempt, max_attempts, scheduled_at, created_at,
       attempted_at, attempted_by,
       CASE WHEN $4::jsonb IS NULL THEN errors ELSE errors || jsonb_build_array($4::jsonb) END,
       unique_key, org_id
  FROM done
"#;

/// Hand running jobs of a stopping worker back: the attempt did not happen, so it is not counted.
pub const HAND_BACK: &str = r#"
WITH back AS (
    UPDATE jobs
       SET state = 'available', attempt = greatest(attempt - 1, 0), attempted_by = NULL, scheduled_at = now()
     WHERE id = ANY($1::bigint[]) AND state = 'running' AND attempted_by = $2
    RETURNING queue
)
SELECT count(*) AS n FROM back
 CROSS JOIN LATERAL (SELECT pg_notify('wedsync_jobs', back.queue)) notified
"#;

/// Snooze a running job of worker $2 for $3 seconds: `scheduled` again (or `available` at once
/// for no delay, notifying its queue), the attempt given back so that waiting costs none.
pub const SNOOZE: &str = r#"
WITH snoozed AS (
    UPDATE jobs
       SET state = CASE WHEN $3::float8 <= 0 THEN 'available' ELSE 'scheduled' END,
           scheduled_at = now() + make_interval(secs => greatest($3::float8, 0)),
           attempt = greatest(attempt - 1, 0), attempted_by = NULL
     WHERE id = $1 AND state = 'running' AND attempted_by = $2
    RETURNING queue, state
)
SELECT count(*) AS n FROM snoozed
  LEFT JOIN LATERAL (SELECT pg_notify('wedsync_jobs', snoozed.queue)
                      WHERE snoozed.state = 'available') notified ON true
"#;

/// Waiting jobs (scheduled or retryable) holding any of the unique keys $1 become available now;
/// their queues are notified once each.
pub const RUN_NOW_BY_UNIQUE_KEYS: &str = r#"
WITH woken AS (
    UPDATE jobs SET state = 'available', scheduled_at = now()
     WHERE unique_key = ANY($1::text[])
       AND (state = 'scheduled' OR ($2 AND state = 'retryable'))
    RETURNING queue
)
SELECT coalesce(sum(q.n), 0)::bigint
  FROM (SELECT queue, count(*) AS n FROM woken GROUP BY queue) q
 CROSS JOIN LATERAL (SELECT pg_notify('wedsync_jobs', q.queue)) notified
"#;

/// Scheduled and retryable jobs whose time has come become available; notifies their queues.
pub const PROMOTE_DUE: &str = r#"
WITH promoted AS (
    UPDATE jobs SET state = 'available'
     WHERE id = ANY (ARRAY(
        SELECT id FROM jobs
         WHERE state IN ('scheduled', 'retryable') AND scheduled_at <= now()
         ORDER BY scheduled_at
         LIMIT $1
         FOR UPDATE SKIP LOCKED
     ))
    RETURNING queue
)
SELECT q.queue, q.n
  FROM (SELECT queue, count(*) AS n FROM promoted GROUP BY queue) q
 CROSS JOIN LATERAL (SELECT pg_notify('wedsync_jobs', q.queue)) notified
"#;

pub const REGISTER_WORKER: &str = r#"
INSERT INTO workers (id, host, pid, queues) VALUES ($1, $2, $3, $4)
ON CONFLICT (id) DO UPDATE SET heartbeat_at = now()
"#;

/// Returns whether the worker row still exists (a rescued worker must stop and re-register).
pub const HEARTBEAT: &str = "UPDATE workers SET heartbeat_at = now() WHERE id = $1 RETURNING id";

/// Which of the given jobs worker $2 still holds (the others were cancelled or rescued).
pub const STILL_HELD: &str =
    "SELECT id FROM jobs WHERE id = ANY($1::bigint[]) AND state = 'running' AND attempted_by = $2";

pub const DEREGISTER_WORKER: &str = "DELETE FROM workers WHERE id = $1";

/// Workers silent for longer than $1 seconds are removed; with $2 also running jobs whose worker
/// row is gone altogether (the slow sweep). Their running jobs go back to the queue, or are
/// discarded when out of attempts. Without a dead worker and without $2 it reads only `workers`.
pub const RESCUE_ORPHANS: &str = r#"
WITH dead AS (
    DELETE FROM workers WHERE heartbeat_at < now() - make_interval(secs => $1::float8) RETURNING id
), orphans AS (
    SELECT j.id FROM jobs j
     WHERE (EXISTS (SELECT 1 FROM dead) OR $2::bool)
       AND j.state = 'running'
       AND (j.attempted_by IN (SELECT id FROM dead)
            OR ($2::bool AND NOT EXISTS (SELECT 1 FROM workers w WHERE w.id = j.attempted_by)))
     FOR UPDATE OF j SKIP LOCKED
), error AS (
    SELECT jsonb_build_object('error', 'worker stopped heartbeating; job rescued', 'kind', 'rescued',
                              'at', now()) AS e
), retried AS (
    UPDATE jobs j
       SET state = 'available', attempted_by = NULL, scheduled_at = now(),
           errors = j.errors || jsonb_build_array((SELECT e FROM error) || jsonb_build_object('attempt', j.attempt))
      FROM orphans o
     WHERE j.id = o.id AND j.attempt < j.max_attempts
    RETURNING j.id, j.queue
), discarded AS (
    DELETE FROM jobs j USING orphans o
     WHERE j.id = o.id AND j.attempt >= j.max_attempts
    RETURNING j.*
), archived AS (
    INSERT INTO jobs_finished (id, queue, kind, args, state, priority, attempt, max_attempts, scheduled_at,
                               created_at, attempted_at, attempted_by, errors, unique_key, org_id)
    SELECT id, queue, kind, args, 'discarded', priority, attempt, max_attempts, scheduled_at, created_at,
           attempted_at, attempted_by,
           errors || jsonb_build_array((SELECT e FROM error) || jsonb_build_object('attempt', attempt)),
           unique_key, org_id
      FROM discarded
    RETURNING id
)
SELECT (SELECT count(*) FROM retried) AS rescued,
       (SELECT count(*) FROM archived) AS discarded,
       (SELECT count(*) FROM (SELECT DISTINCT queue FROM retried) q
         CROSS JOIN LATERAL (SELECT pg_notify('wedsync_jobs', q.queue)) n) AS notified
"#;

/// True at most once per 30 s across all workers: whether this pass should sweep for orphans.
pub const CLAIM_ORPHAN_SWEEP: &str = r#"
UPDATE queue_maintenance SET last_sweep_at = now()
 WHERE last_sweep_at < now() - interval '30 seconds'
RETURNING true
"#;

/// One transaction-scoped advisory lock so that only one process at a time runs maintenance.
pub const TRY_MAINTENANCE_LOCK: &str = "SELECT pg_try_advisory_xact_lock(7460327411)";

/// Dead row versions in the hot table, from the statistics collector (updated about once a second).
pub const JOBS_DEAD_TUPLES: &str =
    "SELECT coalesce(n_dead_tup, 0) FROM pg_stat_user_tables WHERE relid = 'jobs'::regclass";

/// Vacuum the hot table; skipped when another vacuum already holds it. Simple-protocol only.
pub const VACUUM_JOBS: &str = "VACUUM (SKIP_LOCKED, TRUNCATE false) jobs";

pub const POOLS: &str =
    "SELECT queue, concurrency, paused, reason, updated_at FROM pools ORDER BY queue";

/// Create a pool row with a default concurrency if the queue has none yet.
pub const ENSURE_POOL: &str =
    "INSERT INTO pools (queue, concurrency) VALUES ($1, $2) ON CONFLICT (queue) DO NOTHING";

pub const SET_POOL_CONCURRENCY: &str = r#"
INSERT INTO pools (queue, concurrency, reason) VALUES ($1, $2, $3)
ON CONFLICT (queue) DO UPDATE SET concurrency = $2, reason = $3, updated_at = now()
RETURNING queue, concurrency, paused, reason, updated_at
"#;

pub const SET_POOL_PAUSED: &str = r#"
INSERT INTO pools (queue, concurrency, paused) VALUES ($1, $3, $2)
ON CONFLICT (queue) DO UPDATE SET paused = $2, updated_at = now()
RETURNING queue, concurrency, paused, reason, updated_at
"#;

pub const GET_JOB: &str = concat!(
    "SELECT ",
    job_columns!(),
    ", finalized_at, result FROM all_jobs WHERE id = $1"
);

/// Newest first; NULL filters match everything.
pub const LIST_JOBS: &str = concat!(
    "SELECT ",
    job_columns!(),
    ", finalized_at, result FROM all_jobs \
     WHERE ($1::text IS NULL OR queue = $1) AND ($2::text IS NULL OR state = $2) \
       AND ($3::text IS NULL OR kind = $3) AND ($4::text IS NULL OR org_id = $4) \
       AND ($5::bigint IS NULL OR id < $5) \
     ORDER BY id DESC LIMIT $6"
);

/// Cancel an unfinished job of any state; a running one is told through NOTIFY to stop.
pub const CANCEL: &str = r#"
WITH done AS (
    DELETE FROM jobs WHERE id = $1 AND ($2::text IS NULL OR org_id = $2) RETURNING *
), archived AS (
    INSERT INTO jobs_finished (id, queue, kind, args, state, priority, attempt, max_attempts, scheduled_at,
                               created_at, attempted_at, attempted_by, errors, unique_key, org_id)
    SELECT id, queue, kind, args, 'cancelled', priority, attempt, max_attempts, scheduled_at, created_at,
           attempted_at, attempted_by, errors, unique_key, org_id
      FROM done
    RETURNING id, attempted_by
)
SELECT a.id, a.attempted_by FROM archived a
 CROSS JOIN LATERAL (SELECT pg_notify('wedsync_cancel', a.id::text)) notified
"#;

/// Retry a waiting job now: scheduled or retryable become available immediately (and the
/// queue's workers are told).
pub const RETRY_UNFINISHED: &str = r#"
WITH retried AS (
    UPDATE jobs SET state = 'available', scheduled_at = now()
     WHERE id = $1 AND ($2::text IS NULL OR org_id = $2) AND state IN ('scheduled', 'retryable', 'available')
    RETURNING id, queue
)
SELECT r.id FROM retried r
 CROSS JOIN LATERAL (SELECT pg_notify('wedsync_jobs', r.queue)) notified
"#;

/// Retry a finished job: it moves back to `jobs` as available, keeping its id and error history,
/// with at least one attempt left.
pub const RETRY_FINISHED: &str = r#"
WITH moved AS (
    DELETE FROM jobs_finished WHERE id = $1 AND ($2::text IS NULL OR org_id = $2) RETURNING *
)
INSERT INTO jobs (id, queue, kind, args, state, priority, attempt, max_attempts, scheduled_at, created_at,
                  attempted_at, attempted_by, errors, unique_key, org_id)
SELECT id, queue, kind, args, 'available', priority, attempt, greatest(max_attempts, attempt + 1), now(),
       created_at, attempted_at, NULL, errors, unique_key, org_id
  FROM moved
RETURNING id
"#;

/// Depth and activity per queue, merged with pool settings.
pub const QUEUE_STATS: &str = r#"
WITH live AS (
    SELECT queue,
           count(*) FILTER (WHERE state = 'available')  AS available,
           count(*) FILTER (WHERE state = 'scheduled')  AS scheduled,
           count(*) FILTER (WHERE state = 'running')    AS running,
           count(*) FILTER (WHERE state = 'retryable')  AS retryable,
           min(scheduled_at) FILTER (WHERE state = 'available') AS oldest_available
      FROM jobs GROUP BY queue
), recent AS (
    SELECT queue,
           count(*) FILTER (WHERE state = 'completed') AS completed_last_minute,
           count(*) FILTER (WHERE state = 'discarded') AS discarded_last_minute
      FROM jobs_finished WHERE finalized_at > now() - interval '1 minute' GROUP BY queue
), names AS (
    SELECT queue FROM live UNION SELECT queue FROM recent UNION SELECT queue FROM pools
)
SELECT n.queue,
       coalesce(l.available, 0) AS available, coalesce(l.scheduled, 0) AS scheduled,
       coalesce(l.running, 0) AS running, coalesce(l.retryable, 0) AS retryable,
       coalesce(r.completed_last_minute, 0) AS completed_last_minute,
       coalesce(r.discarded_last_minute, 0) AS discarded_last_minute,
       extract(epoch FROM now() - l.oldest_available)::float8 AS lag_seconds,
       p.concurrency, coalesce(p.paused, false) AS paused
  FROM names n
  LEFT JOIN live l USING (queue) LEFT JOIN recent r USING (queue) LEFT JOIN pools p USING (queue)
 ORDER BY n.queue
"#;

/// Count of jobs per queue, kind and state, for Prometheus. Finished jobs are counted from the
/// last hour only so that a scrape never scans the whole archive.
pub const STATE_COUNTS: &str = r#"
SELECT queue, kind, state, count(*) AS n FROM jobs GROUP BY 1, 2, 3
UNION ALL
SELECT queue, kind, state, count(*) FROM jobs_finished WHERE finalized_at > now() - interval '1 hour'
 GROUP BY 1, 2, 3
"#;
