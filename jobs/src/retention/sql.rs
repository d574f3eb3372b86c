//! The statements of `retention_cleanup`: one bounded batch per call.
//!
//! Every statement takes `$1` = the policy's age in days (int) and `$2` = the batch size
//! (bigint), removes at most `$2` rows older than the cutoff, and reports how many through its
//! row count. The rows are picked and locked by a `FOR UPDATE SKIP LOCKED` sub-select, so a
//! statement never waits on another cleanup's batch (it takes other rows instead) and a row is
//! deleted, and counted, by exactly one of them. Each runs alone in its own (autocommit)
//! transaction, so its locks last only as long as one batch.
//!
//! Tables without a primary key are addressed by `ctid`, which is stable while the row is
//! locked; the `ctid = ANY(...)` form runs as a TID scan.

/// Finished jobs in state `$3` (completed, discarded, cancelled); the BRIN index on
/// `finalized_at` finds the old ones.
pub const DELETE_FINISHED_JOBS: &str = "
DELETE FROM jobs_finished
 WHERE ctid = ANY(ARRAY(
       SELECT ctid FROM jobs_finished
        WHERE state = $3::text
          AND finalized_at < now() - make_interval(days => $1::int)
        LIMIT $2::bigint
          FOR UPDATE SKIP LOCKED))";

/// Recorded `Idempotency-Key` requests (including claims whose process died in flight).
pub const DELETE_IDEMPOTENCY_KEYS: &str = "
DELETE FROM idempotency_keys
 WHERE ctid = ANY(ARRAY(
       SELECT ctid FROM idempotency_keys
        WHERE created_at < now() - make_interval(days => $1::int)
        LIMIT $2::bigint
          FOR UPDATE SKIP LOCKED))";

/// API keys revoked long ago (keys never revoked are never touched); by primary key.
pub const DELETE_REVOKED_API_KEYS: &str = "
DELETE FROM api_keys
 WHERE id = ANY(ARRAY(
       SELECT id FROM api_keys
        WHERE revoked_at IS NOT NULL
          AND revoked_at < now() - make_interval(days => $1::int)
        LIMIT $2::bigint
          FOR UPDATE SKIP LOCKED))";

/// The history of worker pools' sizes (`GET /v1/pools` shows the recent changes); oldest first
/// by primary key (ids grow with `at`), so a batch stops at its `$2`th old row without an index
/// on `at`. A pool's current size is on its `pools` row, which this never touches.
pub const DELETE_POOL_CHANGES: &str = "
DELETE FROM pool_changes
 WHERE id = ANY(ARRAY(
       SELECT id FROM pool_changes
        WHERE at < now() - make_interval(days => $1::int)
        ORDER BY id
        LIMIT $2::bigint
          FOR UPDATE SKIP LOCKED))";

/// Raw metric events: drops the daily partitions wholly older than the cutoff, then deletes at
/// most `$2` expired rows of the default partition (`metric_events_purge`, migration 0006).
pub const PURGE_METRIC_EVENTS: &str = "SELECT metric_events_purge($1::int, $2::bigint)";

/// Rendered bodies of deliveries sent long ago (the delivery's status and Message-ID stay on its
/// row): deleted from `delivery_bodies`, oldest first by the index on `sent_at`.
pub const DELETE_MESSAGE_BODIES: &str = "
DELETE FROM delivery_bodies
 WHERE delivery_id = ANY(ARRAY(
       SELECT delivery_id FROM delivery_bodies
        WHERE sent_at < now() - make_interval(days => $1::int)
        ORDER BY sent_at
        LIMIT $2::bigint
          FOR UPDATE SKIP LOCKED))";
