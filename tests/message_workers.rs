//! Bulk email across real worker processes (issue #3): the send-rate limit holds for all of
//! them together, and `kill -9` in the middle of a send loses no message — the only duplicates
//! are the messages a killed worker had handed to SMTP but not yet recorded as sent.

mod support;

use std::time::{Duration, Instant};
use support::messages::{
    PUBLIC_URL, duplicates, guest_index, new_send, recipients, store, wait_until_finished,
};
use support::smtp::SmtpServer;
use support::{WorkerProcess, wait_for};
use wedsync_db::testing::TestDb;
use wedsync_kinds::messages::Category;

fn worker(db: &TestDb, smtp: &SmtpServer, extra: &[(&str, &str)]) -> WorkerProcess {
    let url = smtp.url();
    let mut env = vec![
        ("WEDSYNC_SMTP_URL", url.as_str()),
        ("WEDSYNC_PUBLIC_URL", PUBLIC_URL),
    ];
    env.extend_from_slice(extra);
    WorkerProcess::spawn(db, "messages", &env)
}

/// The most instants of `times` inside any window of `window` (`times` sorted).
fn busiest_window(times: &[Instant], window: Duration) -> usize {
    let mut best = 0;
    let mut start = 0;
    for end in 0..times.len() {
        while times[end] - times[start] > window {
            start += 1;
        }
        best = best.max(end - start + 1);
    }
    best
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_worker_processes_together_keep_to_fifty_messages_a_second() {
    let db = TestDb::new().await.unwrap();
    let smtp = SmtpServer::start().await;
    let limit = [("WEDSYNC_SMTP_RATE_PER_SECOND", "50")];
    let workers = [worker(&db, &smtp, &limit), worker(&db, &smtp, &limit)];
    wait_for(
        "both workers to register",
        Duration::from_secs(20),
        || async {
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM workers")
                .fetch_one(&db.pool)
                .await
                .unwrap();
            (n == 2).then_some(())
        },
    )
    .await;
    let send = new_send(Category::Transactional, recipients(650));
    store(&db, &send).await;
    let summary = wait_until_finished(&db, &send.id, Duration::from_secs(60)).await;
    let ran_batches: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT attempted_by) FROM jobs_finished WHERE kind = 'deliver_batch'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    drop(workers);

    assert_eq!(summary.sent, 650);
    assert_eq!(ran_batches, 2, "both processes sent");
    let mut times: Vec<Instant> = smtp.messages().iter().map(|m| m.accepted_at).collect();
    times.sort();
    let busiest = busiest_window(&times, Duration::from_secs(10));
    println!("rate limit 50/s, 2 processes: busiest 10 s window held {busiest} messages");
    // The limit promises at most 50/s + 10 %; the floor only shows the two processes together
    // were held to the limit rather than starved, with room for a loaded machine.
    assert!(
        (400..=550).contains(&busiest),
        "{busiest} messages in 10 s, expected at most 500 + 10 % and not far below"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_workers_mid_send_loses_nothing_and_duplicates_only_what_was_in_flight() {
    let db = TestDb::new().await.unwrap();
    let smtp = SmtpServer::start().await;
    let send = new_send(Category::Marketing, recipients(2000));
    store(&db, &send).await;
    let mut current = worker(&db, &smtp, &[]);
    let mut killed = Vec::new();
    for at in [300, 800, 1300] {
        wait_for(
            &format!("{at} messages"),
            Duration::from_secs(60),
            || async { (smtp.count() >= at).then_some(()) },
        )
        .await;
        current.signal("-KILL");
        killed.push(std::mem::replace(&mut current, worker(&db, &smtp, &[])));
    }
    let summary = wait_until_finished(&db, &send.id, Duration::from_secs(120)).await;
    drop(current);

    assert_eq!((summary.sent, summary.failed, summary.queued), (2000, 0, 0));
    let messages = smtp.messages();
    let mut guests: Vec<usize> = messages.iter().map(|m| guest_index(&m.to[0])).collect();
    guests.sort();
    guests.dedup();
    assert_eq!(guests.len(), 2000, "a guest got nothing");
    let ids = messages
        .iter()
        .map(|m| m.header("Message-ID").expect("a Message-ID"));
    let duplicated = duplicates(ids);
    assert_eq!(duplicated, messages.len() - 2000);
    println!(
        "kill -9 x{}: {} messages for 2,000 guests, {duplicated} duplicates",
        killed.len(),
        messages.len()
    );
    // At most the messages a process may have sent and not yet recorded, per kill: its
    // unrecorded limit (4 × the SMTP pool of 10). Recording outcomes at the end of each batch
    // instead would allow a whole batch per running job: up to 2,000 here.
    assert!(
        duplicated <= killed.len() * 40,
        "{duplicated} duplicates after {} kills",
        killed.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_process_reports_its_breakers_and_rate_limit_and_withdraws_them_on_sigterm() {
    let db = TestDb::new().await.unwrap();
    let smtp = SmtpServer::start().await;
    let worker = worker(&db, &smtp, &[("WEDSYNC_SMTP_RATE_PER_SECOND", "50")]);
    let limit: Option<f64> = wait_for(
        "the worker's breaker report",
        Duration::from_secs(20),
        || async {
            sqlx::query_scalar(
                "SELECT rate_limit_per_second FROM provider_breakers WHERE provider = 'smtp'",
            )
            .fetch_optional(&db.pool)
            .await
            .unwrap()
        },
    )
    .await;
    assert_eq!(limit, Some(50.0));

    worker.terminate();
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM provider_breakers")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(
        left, 0,
        "a process that stopped cleanly still shows in /v1/queues"
    );
}
