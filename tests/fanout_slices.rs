//! A send is fanned out a slice at a time (issue #3): each slice's deliveries and batch jobs
//! commit together, so sending starts before a large send is fanned out. A fan-out stopped
//! between two slices carries on where it stopped, and a cancel between two slices counts the
//! recipients that never got a delivery `cancelled`.

mod support;

use serde_json::json;
use support::messages::{
    ORG, TEST_BATCH_SIZE, guest, is_stalled, new_send, only_job, recipients, run_fanout, store,
};
use wedsync_db::testing::TestDb;
use wedsync_kinds::AppContext;
use wedsync_kinds::messages::fanout::{Slice, Step, fan_out_next_slice};
use wedsync_kinds::messages::{Category, NewSend, control, get_send};
use wedsync_queue::{Outcome, Queue};

const RECIPIENTS: usize = 2_500;

/// A stored send of 2,500 guests whose first slice (the first 1,000) is fanned out.
async fn first_slice_fanned_out(db: &TestDb) -> NewSend {
    let send = new_send(Category::Transactional, recipients(RECIPIENTS));
    store(db, &send).await;
    let step = fan_out_next_slice(&db.pool, &send.id).await.unwrap();
    assert_eq!(
        step,
        Step::Slice(Slice {
            deliveries: 1_000,
            batches: 1_000 / TEST_BATCH_SIZE as usize,
            skipped: 0,
            last: false,
        })
    );
    send
}

/// (ordinal, address, variables) of every delivery of the send, in ordinal order.
async fn deliveries(db: &TestDb, send_id: &str) -> Vec<(i32, String, serde_json::Value)> {
    sqlx::query_as(
        "SELECT ordinal, address, variables FROM deliveries WHERE send_id = $1::uuid
          ORDER BY ordinal",
    )
    .bind(send_id)
    .fetch_all(&db.pool)
    .await
    .unwrap()
}

/// The first ordinal of every batch job of the send, in order.
async fn batch_starts(db: &TestDb) -> Vec<i64> {
    sqlx::query_scalar(
        "SELECT (args->>'first')::bigint FROM jobs WHERE kind = 'deliver_batch' ORDER BY 1",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_first_slice_is_committed_with_its_batch_jobs_before_the_rest_is_fanned_out() {
    let db = TestDb::new().await.unwrap();
    let send = first_slice_fanned_out(&db).await;

    let rows = deliveries(&db, &send.id).await;
    assert_eq!(rows.len(), 1_000);
    assert!(
        rows.iter()
            .enumerate()
            .all(|(i, (ordinal, address, _))| { *ordinal == i as i32 && *address == guest(i) })
    );
    let starts = batch_starts(&db).await;
    let expected: Vec<i64> = (0..1_000).step_by(TEST_BATCH_SIZE as usize).collect();
    assert_eq!(starts, expected, "batch jobs for the first slice only");
    let summary = get_send(&db.pool, &send.id, Some(ORG))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((summary.total, summary.queued), (1_000, 1_000));
    assert!(summary.fanned_out_at.is_none(), "not fanned out yet");
    assert!(!summary.stalled);
}

#[tokio::test]
async fn a_fanout_stopped_after_a_slice_carries_on_where_it_stopped() {
    let db = TestDb::new().await.unwrap();
    let send = first_slice_fanned_out(&db).await;

    // The job retried after a crash between two slices.
    let app = AppContext::new(db.pool.clone());
    let outcome = run_fanout(&app, &send.id).await.unwrap();
    assert_eq!(
        outcome,
        Outcome::Completed(Some(json!({"deliveries": 1_500, "batches": 30})))
    );

    // Every recipient once, at its own ordinal, with its own variables.
    let rows = deliveries(&db, &send.id).await;
    assert_eq!(rows.len(), RECIPIENTS);
    for (i, (ordinal, address, variables)) in rows.iter().enumerate() {
        assert_eq!((*ordinal, address.as_str()), (i as i32, guest(i).as_str()));
        assert_eq!(variables, &send.recipients[i].variables);
    }
    let starts = batch_starts(&db).await;
    let expected: Vec<i64> = (0..RECIPIENTS as i64)
        .step_by(TEST_BATCH_SIZE as usize)
        .collect();
    assert_eq!(starts, expected, "every batch job once");
    let summary = get_send(&db.pool, &send.id, Some(ORG))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (summary.total, summary.queued),
        (RECIPIENTS as i32, RECIPIENTS as i32)
    );
    assert!(summary.fanned_out_at.is_some());
    let left: bool = sqlx::query_scalar("SELECT recipients IS NOT NULL FROM bulk_sends")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert!(!left, "the inline recipients go with the last slice");
    // And a further run finds nothing to do.
    assert_eq!(
        run_fanout(&app, &send.id).await.unwrap(),
        Outcome::Completed(Some(json!({"already_fanned_out": true})))
    );
}

#[tokio::test]
async fn a_cancel_between_two_slices_counts_every_recipient_without_a_delivery_cancelled() {
    let db = TestDb::new().await.unwrap();
    let send = first_slice_fanned_out(&db).await;

    control::cancel(&Queue::new(db.pool.clone()), &send.id, Some(ORG))
        .await
        .unwrap();
    let app = AppContext::new(db.pool.clone());
    assert_eq!(
        run_fanout(&app, &send.id).await.unwrap(),
        Outcome::Completed(Some(json!({"already_fanned_out": true}))),
        "the fan-out stops where the cancel found it"
    );

    assert_eq!(deliveries(&db, &send.id).await.len(), 1_000);
    let summary = get_send(&db.pool, &send.id, Some(ORG))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(summary.state, "cancelled");
    // The first slice's 1,000 deliveries were cancelled, the other 1,500 recipients counted.
    assert_eq!(
        (summary.total, summary.queued, summary.cancelled),
        (1_000, 0, RECIPIENTS as i32)
    );
}

#[tokio::test]
async fn a_fanout_discarded_between_two_slices_shows_the_send_stalled_until_it_is_retried() {
    let db = TestDb::new().await.unwrap();
    let send = first_slice_fanned_out(&db).await;
    let stalled = || is_stalled(&db, &send.id);
    assert!(!stalled().await, "its fan-out job will carry on");

    // The fan-out job ends for good between two slices (cancelled here, as the queue discards
    // one out of attempts): 1,500 recipients will never get a delivery, and the send says so
    // although its first 1,000 have batch jobs.
    let queue = Queue::new(db.pool.clone());
    let fanout = only_job(&db, "bulk_send_fanout").await;
    queue.cancel(fanout, Some(ORG)).await.unwrap();
    let summary = get_send(&db.pool, &send.id, Some(ORG))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((summary.state.as_str(), summary.total), ("active", 1_000));
    assert!(summary.stalled);

    queue.retry(fanout, Some(ORG)).await.unwrap();
    assert!(!stalled().await, "the retried fan-out will carry on");
    let app = AppContext::new(db.pool.clone());
    run_fanout(&app, &send.id).await.unwrap();
    assert_eq!(deliveries(&db, &send.id).await.len(), RECIPIENTS);
    assert!(
        !stalled().await,
        "fanned out, with a batch job for every batch"
    );
}
