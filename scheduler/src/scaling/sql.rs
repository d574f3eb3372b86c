//! Every statement of pool scaling and weddings, top to bottom.

/// The columns of a pool that scaling reads.
macro_rules! pool_columns {
    () => {
        "queue, concurrency, paused, min_size, max_size, base_size, desired, desired_replicas,
         override_size, override_until, override_reason, reasons, changed_at, updated_at"
    };
}

pub const POOL_QUEUES: &str = "SELECT queue FROM pools ORDER BY queue";

/// One pool, locked until the evaluation's transaction ends, so concurrent evaluations (or an
/// operator's change during one) apply one after the other and the cooldown sees the last.
pub const LOCK_POOL: &str = concat!(
    "SELECT ",
    pool_columns!(),
    " FROM pools WHERE queue = $1 FOR UPDATE"
);

pub const LIST_POOLS: &str = concat!("SELECT ", pool_columns!(), " FROM pools ORDER BY queue");

/// Weddings that may be active at `$1`: starting within `$2` seconds or started less than `$3`
/// seconds ago (the rules then check exactly).
pub const ACTIVE_WEDDINGS: &str = r#"
SELECT starts_at, expected_guests, expected_photos
  FROM weddings
 WHERE starts_at <= $1 + $2 * interval '1 second'
   AND starts_at > $1 - $3 * interval '1 second'
"#;

/// Jobs of queue `$1` ready to run now.
pub const AVAILABLE: &str = "SELECT count(*) FROM jobs WHERE queue = $1 AND state = 'available'";

/// Jobs of queue `$1` completed in the `$3` seconds up to `$2`, and the seconds they ran.
pub const COMPLETED_WORK: &str = r#"
SELECT count(*) AS completed,
       coalesce(sum(extract(epoch FROM finalized_at - attempted_at)), 0)::float8 AS busy_seconds
  FROM jobs_finished
 WHERE queue = $1 AND state = 'completed' AND attempted_at IS NOT NULL
   AND finalized_at > $2 - $3 * interval '1 second' AND finalized_at <= $2
"#;

/// A change of size: the new size, replicas and reasons; `$7` clears an expired override.
pub const APPLY_CHANGE: &str = r#"
UPDATE pools
   SET concurrency = $2, desired_replicas = $3, desired = $2, reasons = $4, reason = $5,
       changed_at = $6, updated_at = now(),
       override_size   = CASE WHEN $7 THEN NULL ELSE override_size END,
       override_until  = CASE WHEN $7 THEN NULL ELSE override_until END,
       override_reason = CASE WHEN $7 THEN NULL ELSE override_reason END
 WHERE queue = $1
"#;

/// No change of size (cooldown, or nothing to do): remember what the rules asked for, clear an
/// expired override (`$3`), and when the rules ask for the current size record their reasons
/// (`$4`, `$5`; NULL otherwise). Touches the row only when something differs (each update
/// notifies the workers).
pub const NOTE_DESIRED: &str = r#"
UPDATE pools
   SET desired = $2,
       override_size   = CASE WHEN $3 THEN NULL ELSE override_size END,
       override_until  = CASE WHEN $3 THEN NULL ELSE override_until END,
       override_reason = CASE WHEN $3 THEN NULL ELSE override_reason END,
       reasons = coalesce($4, reasons),
       reason = coalesce($5, reason)
 WHERE queue = $1
   AND (desired IS DISTINCT FROM $2 OR $3 OR ($4::jsonb IS NOT NULL AND reasons <> $4::jsonb))
"#;

pub const INSERT_CHANGE: &str = r#"
INSERT INTO pool_changes (queue, at, from_size, to_size, from_replicas, to_replicas, reasons, source)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
"#;

/// The `$2` most recent changes of every pool.
pub const RECENT_CHANGES: &str = r#"
SELECT queue, at, from_size, to_size, from_replicas, to_replicas, reasons, source
  FROM (SELECT *, row_number() OVER (PARTITION BY queue ORDER BY at DESC, id DESC) AS n
          FROM pool_changes) c
 WHERE n <= $1
 ORDER BY queue, at DESC, id DESC
"#;

/// A pool row for an operator's first change to a queue that has none yet.
pub const ENSURE_POOL: &str =
    "INSERT INTO pools (queue, concurrency) VALUES ($1, $2) ON CONFLICT (queue) DO NOTHING";

/// A pool from the configuration file, unless the queue has one (the row rules once it exists).
pub const SEED_POOL: &str = r#"
INSERT INTO pools (queue, concurrency, min_size, max_size, base_size)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (queue) DO NOTHING
"#;

pub const SET_CONFIG: &str = r#"
UPDATE pools
   SET min_size = $2, max_size = $3, base_size = $4,
       override_size = $5, override_until = $6, override_reason = $7, updated_at = now()
 WHERE queue = $1
"#;

/// What KEDA reads (the `wedsync_scaling` view of migration 0007).
pub const SCALING: &str =
    "SELECT queue, desired_replicas, concurrency, paused FROM wedsync_scaling ORDER BY queue";

pub const INSERT_WEDDING: &str = r#"
INSERT INTO weddings (org_id, name, local_date, local_start, timezone, starts_at,
                      expected_guests, expected_photos)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
RETURNING id::text AS id, org_id, name, local_date, local_start, timezone, starts_at,
          expected_guests, expected_photos, created_at
"#;

/// Weddings starting after `$2` (any organisation when `$1` is NULL), soonest first.
pub const LIST_WEDDINGS: &str = r#"
SELECT id::text AS id, org_id, name, local_date, local_start, timezone, starts_at,
       expected_guests, expected_photos, created_at
  FROM weddings
 WHERE ($1::text IS NULL OR org_id = $1) AND starts_at > $2
 ORDER BY starts_at, id
 LIMIT $3
"#;
