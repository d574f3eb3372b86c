//! `retention_cleanup` (SPEC §5.3): per-policy ages, bounded batches that two cleanups can run
//! at once without double counting, the time budget, and unknown policies.

mod support;

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;
use support::{start_worker, test_config, wait_for_job_state};
use wedsync_db::testing::TestDb;
use wedsync_kinds::{AppContext, PolicyOverride, RetentionCleanup, register_all};
use wedsync_queue::{Job, JobRow, Queue};
use wedsync_worker::WorkerConfig;

const WAIT: Duration = Duration::from_secs(60);

async fn setup() -> (TestDb, Queue) {
    let db = TestDb::new().await.expect("test database");
    let queue = Queue::new(db.pool.clone());
    (db, queue)
}

fn worker_config(concurrency: i32) -> WorkerConfig {
    let mut config = test_config(&["maintenance"]);
    config
        .queue_concurrency
        .insert("maintenance".to_owned(), concurrency);
    config
}

/// Enqueue one cleanup with `args`, run a worker until it reaches `state`, stop the worker.
async fn run_cleanup(db: &TestDb, queue: &Queue, args: RetentionCleanup, state: &str) -> JobRow {
    let id = queue
        .enqueue(args.to_new_job().expect("encode args"))
        .await
        .unwrap()
        .id;
    let worker = start_worker(
        db,
        register_all(),
        AppContext::new(db.pool.clone()),
        worker_config(1),
    );
    let job = wait_for_job_state(queue, id, state, WAIT).await;
    worker.stop().await;
    job
}

/// `count` finished jobs in `state` whose `finalized_at` (and other times) lie `age_hours` in
/// the past, with kind `kind` so a test can count them apart from the cleanup's own row.
async fn seed_finished(db: &TestDb, state: &str, kind: &str, age_hours: i32, count: i64) {
    sqlx::query(
        "INSERT INTO jobs_finished (id, queue, kind, args, state, priority, attempt, max_attempts,
                                    scheduled_at, created_at, errors, finalized_at)
         SELECT 1000000 + g, 'seeded', $2, '{}', $1, 5, 1, 20, t.at, t.at, '[]', t.at
           FROM generate_series(1, $4::bigint) g,
                LATERAL (SELECT now() - make_interval(hours => $3::int) AS at) t",
    )
    .bind(state)
    .bind(kind)
    .bind(age_hours)
    .bind(count)
    .execute(&db.pool)
    .await
    .expect("seed jobs_finished");
}

async fn finished_of_kind(db: &TestDb, state: &str, kind: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM jobs_finished WHERE state = $1 AND kind = $2")
        .bind(state)
        .bind(kind)
        .fetch_one(&db.pool)
        .await
        .expect("count jobs_finished")
}

async fn count(db: &TestDb, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(&db.pool)
        .await
        .expect("count rows")
}

fn days(d: i32) -> i32 {
    d * 24
}

fn deleted(job: &JobRow) -> &serde_json::Map<String, Value> {
    job.result
        .as_ref()
        .and_then(|r| r["deleted"].as_object())
        .unwrap_or_else(|| panic!("no deleted counts in result {:?}", job.result))
}

fn deleted_of(job: &JobRow, policy: &str) -> u64 {
    deleted(job)[policy].as_u64().expect("a count")
}

#[tokio::test]
async fn each_policy_removes_exactly_its_old_rows_and_reports_counts() {
    let (db, queue) = setup().await;
    // Finished jobs half a day either side of each state's age. A discarded job 29.5 days old is
    // past the completed age but kept: each state has its own policy.
    seed_finished(&db, "completed", "old", days(14) + 12, 3).await;
    seed_finished(&db, "completed", "young", days(14) - 12, 2).await;
    seed_finished(&db, "discarded", "old", days(30) + 12, 2).await;
    seed_finished(&db, "discarded", "young", days(30) - 12, 4).await;
    seed_finished(&db, "cancelled", "old", days(30) + 12, 1).await;
    seed_finished(&db, "cancelled", "young", days(30) - 12, 2).await;
    sqlx::query(
        "INSERT INTO idempotency_keys (org_id, key, request_hash, created_at)
         SELECT 'org', 'old-' || g, 'h', now() - interval '2 days 12 hours'
           FROM generate_series(1, 3) g
         UNION ALL
         SELECT 'org', 'young-' || g, 'h', now() - interval '1 day 12 hours'
           FROM generate_series(1, 2) g",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO api_keys (org_id, role, key_hash, key_prefix, created_at, revoked_at) VALUES
            ('org', 'planner', 'old-1', 'o1', now() - interval '400 days', now() - interval '90 days 12 hours'),
            ('org', 'planner', 'old-2', 'o2', now() - interval '400 days', now() - interval '200 days'),
            ('org', 'planner', 'young', 'y1', now() - interval '400 days', now() - interval '89 days 12 hours'),
            ('org', 'admin', 'active', 'a1', now() - interval '400 days', NULL)",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    // Deliveries sent 30.5 days ago lose their rendered bodies; younger ones keep theirs, and
    // every delivery keeps its row.
    support::messages::insert_bare_send(&db, "org", 4).await;
    sqlx::query(
        "WITH sent AS (
             INSERT INTO deliveries (send_id, ordinal, address, address_hash, status, sent_at)
             SELECT '00000000-0000-0000-0000-000000000001', g, 'g' || g || '@example.com', 'h' || g,
                    CASE WHEN g < 3 THEN 'sent' ELSE 'queued' END,
                    CASE g WHEN 0 THEN now() - interval '30 days 12 hours'
                           WHEN 1 THEN now() - interval '40 days'
                           WHEN 2 THEN now() - interval '29 days 12 hours' END
               FROM generate_series(0, 3) g
             RETURNING id, sent_at)
         INSERT INTO delivery_bodies (delivery_id, sent_at, subject, body_text, body_html)
         SELECT id, sent_at, 'Subject', 'Body', '<p>Body</p>' FROM sent WHERE sent_at IS NOT NULL",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    // Pool history older than 90 days goes; the pools themselves stay.
    sqlx::query(
        "INSERT INTO pool_changes (queue, at, from_size, to_size, from_replicas, to_replicas,
                                   reasons, source)
         SELECT 'photos', now() - make_interval(days => d), 1, 2, 1, 1, '[]', 'rules'
           FROM unnest(ARRAY[200, 91, 89, 1]) d",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    // Unfinished jobs, however old, are never retention's business.
    sqlx::query(
        "INSERT INTO jobs (queue, kind, state, created_at, scheduled_at) VALUES
            ('elsewhere', 'old', 'available', now() - interval '400 days', now() - interval '400 days'),
            ('elsewhere', 'old', 'scheduled', now() - interval '400 days', now() + interval '1 day'),
            ('elsewhere', 'old', 'retryable', now() - interval '400 days', now() + interval '1 day')",
    )
    .execute(&db.pool)
    .await
    .unwrap();

    let job = run_cleanup(&db, &queue, RetentionCleanup::default(), "completed").await;

    assert_eq!(
        job.result,
        Some(json!({
            "deleted": {
                "completed_jobs": 3,
                "discarded_jobs": 2,
                "cancelled_jobs": 1,
                "idempotency_keys": 3,
                "revoked_api_keys": 2,
                "metric_events": 0,
                "failed_photo_originals": 0,
                "message_bodies": 2,
                "pool_changes": 2,
            },
            "complete": true,
        }))
    );
    let bodies: Vec<(i32, bool)> = sqlx::query_as(
        "SELECT d.ordinal, b.delivery_id IS NOT NULL
           FROM deliveries d LEFT JOIN delivery_bodies b ON b.delivery_id = d.id
          ORDER BY d.ordinal",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        bodies,
        [(0, false), (1, false), (2, true), (3, false)],
        "only bodies of deliveries sent over 30 days ago are deleted; the deliveries stay"
    );
    for (state, young) in [("completed", 2), ("discarded", 4), ("cancelled", 2)] {
        assert_eq!(finished_of_kind(&db, state, "old").await, 0, "old {state}");
        assert_eq!(
            finished_of_kind(&db, state, "young").await,
            young,
            "young {state}"
        );
    }
    let keys: Vec<String> = sqlx::query_scalar("SELECT key FROM idempotency_keys ORDER BY key")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert_eq!(keys, ["young-1", "young-2"]);
    let api_keys: Vec<String> =
        sqlx::query_scalar("SELECT key_hash FROM api_keys ORDER BY key_hash")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(api_keys, ["active", "young"]);
    let history: Vec<i32> = sqlx::query_scalar(
        "SELECT extract(day FROM now() - at)::int FROM pool_changes ORDER BY at",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(history, [89, 1], "pool changes younger than 90 days stay");
    assert_eq!(
        count(&db, "SELECT count(*) FROM jobs WHERE queue = 'elsewhere'").await,
        3
    );
}

#[tokio::test]
async fn overrides_change_a_policys_age() {
    let (db, queue) = setup().await;
    seed_finished(&db, "completed", "old", days(8), 2).await;
    seed_finished(&db, "completed", "young", days(6), 1).await;
    let args = RetentionCleanup {
        policies: BTreeMap::from([(
            "completed_jobs".to_owned(),
            PolicyOverride { older_than_days: 7 },
        )]),
        ..Default::default()
    };
    let job = run_cleanup(&db, &queue, args, "completed").await;
    assert_eq!(deleted_of(&job, "completed_jobs"), 2);
    assert_eq!(finished_of_kind(&db, "completed", "young").await, 1);
}

#[tokio::test]
async fn two_cleanups_at_once_neither_fail_nor_double_count() {
    let (db, queue) = setup().await;
    seed_finished(&db, "completed", "old", days(20), 20_000).await;
    seed_finished(&db, "completed", "young", days(1), 100).await;
    let args = RetentionCleanup {
        batch_size: Some(500),
        ..Default::default()
    };
    let new_job = args.to_new_job().unwrap();
    // Both enqueued before the worker starts, so its first claim takes both into its two slots.
    let ids: Vec<i64> = queue
        .enqueue_many(&[new_job.clone(), new_job])
        .await
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    let worker = start_worker(
        &db,
        register_all(),
        AppContext::new(db.pool.clone()),
        worker_config(2),
    );
    let mut jobs = Vec::new();
    for id in ids {
        jobs.push(wait_for_job_state(&queue, id, "completed", WAIT).await);
    }
    worker.stop().await;

    // They really ran at the same time: each started before the other finished.
    for (a, b) in [(&jobs[0], &jobs[1]), (&jobs[1], &jobs[0])] {
        assert!(
            a.attempted_at.unwrap() < b.finalized_at.unwrap(),
            "the cleanups did not overlap"
        );
    }
    for job in &jobs {
        assert_eq!(job.attempt, 1, "{:?}", job.errors);
        assert_eq!(job.errors, json!([]));
        assert_eq!(job.result.as_ref().unwrap()["complete"], json!(true));
    }
    assert!(
        jobs.iter().all(|j| deleted_of(j, "completed_jobs") > 0),
        "one cleanup did all the work: {:?}",
        jobs.iter().map(|j| &j.result).collect::<Vec<_>>()
    );
    let total: u64 = jobs.iter().map(|j| deleted_of(j, "completed_jobs")).sum();
    assert_eq!(
        total,
        20_000,
        "summed counts {:?}",
        jobs.iter().map(|j| &j.result).collect::<Vec<_>>()
    );
    assert_eq!(finished_of_kind(&db, "completed", "old").await, 0);
    assert_eq!(finished_of_kind(&db, "completed", "young").await, 100);
}

#[tokio::test]
async fn a_spent_time_budget_stops_early_and_still_succeeds() {
    let (db, queue) = setup().await;
    seed_finished(&db, "completed", "old", days(20), 20_000).await;
    seed_finished(&db, "discarded", "old", days(40), 10).await;
    // One row per batch: 20,000 statements cannot fit in completed_jobs' share of 2 s.
    let args = RetentionCleanup {
        batch_size: Some(1),
        time_budget_secs: Some(2.0),
        ..Default::default()
    };
    let job = run_cleanup(&db, &queue, args, "completed").await;

    let result = job.result.as_ref().unwrap();
    assert_eq!(result["complete"], json!(false), "{result}");
    let removed = deleted_of(&job, "completed_jobs");
    let left = finished_of_kind(&db, "completed", "old").await;
    assert!(removed > 0 && left > 0, "removed {removed}, left {left}");
    assert_eq!(removed + left as u64, 20_000);
    // The first policy's backlog did not spend the budget of the ones after it: each gets an
    // equal share of what is left when it starts.
    assert_eq!(deleted_of(&job, "discarded_jobs"), 10);
    assert_eq!(finished_of_kind(&db, "discarded", "old").await, 0);
}

#[tokio::test]
async fn a_failing_policy_does_not_stop_the_ones_after_it() {
    let (db, queue) = setup().await;
    seed_finished(&db, "completed", "old", days(20), 3).await;
    seed_finished(&db, "discarded", "old", days(40), 4).await;
    // completed_jobs, the first policy, fails at its first batch.
    sqlx::raw_sql(
        "CREATE FUNCTION refuse_delete() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN RAISE EXCEPTION 'completed jobs may not go today'; END $$;
         CREATE TRIGGER refuse_completed BEFORE DELETE ON jobs_finished
             FOR EACH ROW WHEN (OLD.state = 'completed') EXECUTE FUNCTION refuse_delete();",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let job = run_cleanup(&db, &queue, RetentionCleanup::default(), "retryable").await;

    assert_eq!(finished_of_kind(&db, "discarded", "old").await, 0);
    assert_eq!(finished_of_kind(&db, "completed", "old").await, 3);
    let error = job.errors[0]["error"].as_str().unwrap();
    assert!(error.contains("`completed_jobs` failed"), "{error}");
    assert!(error.contains("\"discarded_jobs\":4"), "{error}");
}

#[tokio::test]
async fn an_unknown_policy_discards_the_job_naming_it() {
    let (db, queue) = setup().await;
    seed_finished(&db, "completed", "old", days(20), 5).await;
    let args: RetentionCleanup = serde_json::from_value(json!({
        "policies": {
            "completed_jobs": {"older_than_days": 7},
            "photo_orignals": {"older_than_days": 3},
        }
    }))
    .unwrap();
    let job = run_cleanup(&db, &queue, args, "discarded").await;

    assert_eq!(job.attempt, 1, "a permanent error is not retried");
    assert_eq!(job.errors[0]["kind"], json!("permanent"));
    let error = job.errors[0]["error"].as_str().unwrap();
    assert!(error.contains("photo_orignals"), "{error}");
    assert!(
        error.starts_with("unknown retention policy: photo_orignals (known: completed_jobs,"),
        "{error}"
    );
    // Nothing was removed.
    assert_eq!(finished_of_kind(&db, "completed", "old").await, 5);
}
