//! The suppression list is checked at send time (SPEC §5.1, issue #3) even when a claimed
//! message waits seconds for its turn: under a rate limit shared by several batch jobs, a guest
//! who unsubscribes while their message waits for its slot gets nothing.

mod support;

use std::collections::HashSet;
use std::time::Duration;
use support::messages::{
    ORG, context_with, guest, new_send, recipients, smtp_provider, statuses, store,
    wait_until_finished,
};
use support::smtp::SmtpServer;
use support::{start_worker, test_config, wait_for};
use wedsync_db::testing::TestDb;
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
