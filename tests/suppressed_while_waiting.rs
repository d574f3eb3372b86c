//! The suppression list is checked at send time (SPEC §5.1, issue #3) even when a claimed
//! message waits seconds for its turn: under a rate limit shared by several batch jobs, or in a
//! chunk claimed while a slow server still takes the one before, a guest who unsubscribes while
//! their message waits gets nothing.

mod support;

use std::collections::HashSet;
use std::time::Duration;
use support::messages::{
    ORG, context_with, guest, messages_context, new_send, recipients, smtp_provider,
    smtp_provider_pooled, statuses, store, wait_until_finished,
};
use support::smtp::SmtpServer;
use support::{start_worker, test_config, wait_for};
use wedsync_db::testing::TestDb;
use wedsync_kinds::AppContext;
use wedsync_kinds::messages::Category;
use wedsync_kinds::messages::providers::{BreakerConfig, ProviderRole, Providers};
use wedsync_kinds::register_all;
use wedsync_kinds::suppression::{Address, Channel, Reason, SuppressionList};

fn received(smtp: &SmtpServer) -> HashSet<String> {
    smtp.messages()
        .into_iter()
        .map(|m| m.to[0].clone())
        .collect()
}

#[tokio::test]
async fn a_guest_suppressed_while_their_claimed_message_waits_for_its_slot_gets_nothing() {
    let db = TestDb::new().await.unwrap();
    let smtp = SmtpServer::start().await;
    // One message a second, and one batch job per guest: all four are claimed at once (their
    // claims found nobody suppressed), then go one by one, a second apart: the first at once,
    // the others after 1, 2 and 3 s.
    let provider = smtp_provider(ProviderRole::Primary, &smtp.url(), BreakerConfig::default())
        .with_rate_limit(db.pool.clone(), 1.0);
    let app = context_with(&db, Providers::new().with(provider));
    let mut send = new_send(Category::Marketing, recipients(4));
    send.batch_size = 1;
    store(&db, &send).await;
    let worker = start_worker(&db, register_all(), app, test_config(&["messages"]));
    wait_for(
        "every delivery claimed and the first message in",
        Duration::from_secs(20),
        || async {
            let statuses = statuses(&db, &send.id).await;
            let claimed =
                statuses.len() == 4 && statuses.values().all(|s| s == "sending" || s == "sent");
            (claimed && smtp.count() >= 1).then_some(())
        },
    )
    .await;

    let list = SuppressionList::new(db.pool.clone());
    let first_received = received(&smtp);
    for i in 0..4 {
        if !first_received.contains(&guest(i)) {
            let address = Address::parse(Channel::Email, &guest(i)).unwrap();
            list.add(Some(ORG), &address, Reason::Unsubscribed)
                .await
                .unwrap();
        }
    }
    // Who was still waiting once every suppression was in (the next slot is most of a second
    // away, but should it have come meanwhile, that message is not counted as waiting).
    let sent_by_then = received(&smtp);
    let waiting: Vec<String> = (0..4)
        .map(guest)
        .filter(|g| !sent_by_then.contains(g))
        .collect();
    assert!(
        waiting.len() >= 2,
        "too few messages were still waiting: {waiting:?}"
    );

    let summary = wait_until_finished(&db, &send.id, Duration::from_secs(20)).await;
    worker.stop().await;
    let statuses = statuses(&db, &send.id).await;
    let received = received(&smtp);
    for g in &waiting {
        assert!(!received.contains(g), "{g} was suppressed but got mail");
        assert_eq!(statuses[g], "suppressed", "{g}");
    }
    assert_eq!(summary.sent, sent_by_then.len() as i32);
    assert_eq!(summary.suppressed, waiting.len() as i32);
    assert_eq!(smtp.count(), sent_by_then.len());
}

#[tokio::test]
async fn a_guest_suppressed_while_their_chunk_waits_behind_a_slow_message_gets_nothing() {
    let db = TestDb::new().await.unwrap();
    let smtp = SmtpServer::start().await;
    // The server takes 3 s to accept each message, over one connection, and chunks hold one
    // delivery: guest 1's chunk is claimed (and checked against the list) while guest 0's
    // message is still being accepted, and starts once it is.
    const SLOW: Duration = Duration::from_secs(3);
    smtp.slow_down(SLOW);
    let provider = smtp_provider_pooled(
        ProviderRole::Primary,
        &smtp.url(),
        BreakerConfig::default(),
        1,
    );
    let mut messages = messages_context(Providers::new().with(provider));
    messages.chunk_size = 1;
    let app = AppContext::new(db.pool.clone()).with_messages(messages);
    let send = new_send(Category::Marketing, recipients(3));
    store(&db, &send).await;
    let worker = start_worker(&db, register_all(), app, test_config(&["messages"]));
    wait_for(
        "guest 1 claimed while guest 0's message is accepted",
        Duration::from_secs(20),
        || async {
            let statuses = statuses(&db, &send.id).await;
            let claimed = statuses.get(&guest(1)).is_some_and(|s| s == "sending");
            (claimed && smtp.count() == 1).then_some(())
        },
    )
    .await;
    let address = Address::parse(Channel::Email, &guest(1)).unwrap();
    SuppressionList::new(db.pool.clone())
        .add(Some(ORG), &address, Reason::Unsubscribed)
        .await
        .unwrap();
    let suppressed_at = std::time::Instant::now();

    let summary = wait_until_finished(&db, &send.id, Duration::from_secs(30)).await;
    worker.stop().await;
    let first = &smtp.messages()[0];
    assert_eq!(first.to, [guest(0)]);
    assert!(
        suppressed_at < first.accepted_at + SLOW,
        "the suppression came after guest 0's message was answered: nothing was tested"
    );
    let statuses = statuses(&db, &send.id).await;
    assert!(
        !received(&smtp).contains(&guest(1)),
        "guest 1 was suppressed but got mail"
    );
    assert_eq!(statuses[&guest(1)], "suppressed");
    assert_eq!((summary.sent, summary.suppressed), (2, 1));
    assert_eq!(received(&smtp), HashSet::from([guest(0), guest(2)]));
}
