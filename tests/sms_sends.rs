//! Bulk SMS end to end (SPEC §5.1) against a stub HTTP provider on loopback: suppressed numbers
//! get nothing, a number the provider refuses bounces and is suppressed, a 429 is retried, a
//! marketing text carries a working opt-out link, a provider that refuses connections is
//! replaced by the secondary, and one that took a text but whose answer was cut off is not.

mod support;

use std::sync::Arc;
use std::time::Duration;
use support::messages::{ORG, context_with, store, wait_until_finished};
use support::refusing_address;
use support::sms::{Action, SmsServer, base_url, number, sms_provider, sms_send};
use support::{start_worker, test_config};
use wedsync_db::testing::TestDb;
use wedsync_kinds::messages::Category;
use wedsync_kinds::messages::providers::{
    BreakerConfig, Provider, ProviderRole, Providers, SmsClient,
};
use wedsync_kinds::register_all;
use wedsync_kinds::suppression::{Address, Channel, Reason, SuppressionList};

#[tokio::test]
async fn suppressed_numbers_get_nothing_refused_ones_bounce_and_rate_limited_ones_are_retried() {
    let db = TestDb::new().await.unwrap();
    let sms = SmsServer::start().await;
    let list = SuppressionList::new(db.pool.clone());
    for i in [3, 7] {
        let spaced = format!("+44 7700 9{i:05}");
        let address = Address::parse(Channel::Sms, &spaced).unwrap();
        list.add(Some(ORG), &address, Reason::Unsubscribed)
            .await
            .unwrap();
    }
    sms.on_to(&number(5), Action::Status(400), None);
    sms.on_to(&number(6), Action::Status(429), Some(1));
    let app = context_with(
        &db,
        Providers::new().with(sms_provider(ProviderRole::Primary, &sms.url())),
    );
    let send = sms_send(Category::Transactional, 20);
    store(&db, &send).await;
    let worker = start_worker(&db, register_all(), app, test_config(&["messages"]));
    let summary = wait_until_finished(&db, &send.id, Duration::from_secs(30)).await;
    worker.stop().await;

    assert_eq!(
        (
            summary.sent,
            summary.suppressed,
            summary.bounced,
            summary.failed
        ),
        (17, 2, 1, 0)
    );
    let received = sms.messages();
    assert_eq!(received.len(), 17);
    for i in [3, 5, 7] {
        assert!(
            received.iter().all(|m| m.to != number(i)),
            "{} got a text",
            number(i)
        );
    }
    assert_eq!(
        sms.requests_to(&number(3)),
        0,
        "a suppressed number reached the provider"
    );
    assert_eq!(sms.requests_to(&number(6)), 2, "the 429 was retried once");
    let guest_1 = received.iter().find(|m| m.to == number(1)).unwrap();
    assert!(
        guest_1
            .body
            .starts_with("Guest 1, the ceremony moved to 3 pm."),
        "{}",
        guest_1.body
    );
    assert_eq!(guest_1.from, "WedSync");
    assert!(
        !guest_1.body.contains("unsubscribe"),
        "a transactional text has no opt-out link"
    );
    let (id, message_id): (i64, Option<String>) = sqlx::query_as(
        "SELECT id, message_id FROM deliveries WHERE send_id = $1::uuid AND address = $2",
    )
    .bind(&send.id)
    .bind(number(1))
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        guest_1.idempotency_key.as_deref(),
        Some(format!("delivery-{id}").as_str())
    );
    // The provider's id for the text is kept, to match its delivery reports.
    assert_eq!(message_id.as_deref(), Some(guest_1.sid.as_str()));
    let bounced = Address::parse(Channel::Sms, &number(5)).unwrap();
    let entry = list
        .find(Some(ORG), &bounced)
        .await
        .unwrap()
        .expect("suppressed");
    assert_eq!(entry.reason, "hard_bounce");
}

#[tokio::test]
async fn a_marketing_text_carries_an_opt_out_link_signed_for_its_delivery() {
    let db = TestDb::new().await.unwrap();
    let sms = SmsServer::start().await;
    let app = context_with(
        &db,
        Providers::new().with(sms_provider(ProviderRole::Primary, &sms.url())),
    );
    let key = app.messages.signing_key.clone();
    let send = sms_send(Category::Marketing, 1);
    store(&db, &send).await;
    let worker = start_worker(&db, register_all(), app, test_config(&["messages"]));
    wait_until_finished(&db, &send.id, Duration::from_secs(30)).await;
    worker.stop().await;

    let body = &sms.messages()[0].body;
    let token = body
        .split("/unsubscribe?token=")
        .nth(1)
        .map(|rest| rest.split_whitespace().next().unwrap_or_default())
        .unwrap_or_else(|| panic!("no opt-out link in {body:?}"));
    let claim = key.verify(token).expect("a valid token");
    assert_eq!((claim.channel, claim.org_id.as_str()), (Channel::Sms, ORG));
    assert_eq!(
        claim.address_hash,
        Address::parse(Channel::Sms, &number(0)).unwrap().hash()
    );
}

#[tokio::test]
async fn while_the_primary_sms_provider_is_down_texts_go_through_the_secondary() {
    let db = TestDb::new().await.unwrap();
    let secondary = SmsServer::start().await;
    let down = refusing_address();
    let providers = Providers::new()
        .with(sms_provider(ProviderRole::Primary, &base_url(down.addr)))
        .with(sms_provider(ProviderRole::Secondary, &secondary.url()));
    let app = context_with(&db, providers);
    let send = sms_send(Category::Transactional, 40);
    store(&db, &send).await;
    let worker = start_worker(&db, register_all(), app, test_config(&["messages"]));
    let summary = wait_until_finished(&db, &send.id, Duration::from_secs(30)).await;
    worker.stop().await;

    assert_eq!((summary.sent, summary.failed), (40, 0));
    assert_eq!(secondary.messages().len(), 40);
    let providers: Vec<Option<String>> =
        sqlx::query_scalar("SELECT DISTINCT provider FROM deliveries WHERE send_id = $1::uuid")
            .bind(&send.id)
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(providers, [Some("sms_secondary".to_owned())]);
}

#[tokio::test]
async fn a_text_the_primary_took_is_not_sent_again_through_the_secondary_when_its_answer_is_cut_off()
 {
    let db = TestDb::new().await.unwrap();
    let (primary, secondary) = (SmsServer::start().await, SmsServer::start().await);
    primary.on_to(&number(1), Action::AcceptCutOff, Some(1));
    // Short enough that the cut-off answer is given up on soon, long enough for its status line
    // to arrive on a loaded machine.
    let client = SmsClient::new(&primary.url(), Duration::from_secs(2)).unwrap();
    let breaker = BreakerConfig {
        failure_threshold: 3,
        open_for: Duration::from_millis(200),
    };
    let providers = Providers::new()
        .with(Provider::sms(
            ProviderRole::Primary,
            Arc::new(client),
            breaker,
        ))
        .with(sms_provider(ProviderRole::Secondary, &secondary.url()));
    let app = context_with(&db, providers);
    let send = sms_send(Category::Transactional, 3);
    store(&db, &send).await;
    let worker = start_worker(&db, register_all(), app, test_config(&["messages"]));
    let summary = wait_until_finished(&db, &send.id, Duration::from_secs(30)).await;
    worker.stop().await;

    assert_eq!((summary.sent, summary.failed), (3, 0));
    assert_eq!(primary.messages().len(), 3);
    assert_eq!(secondary.requests_to(&number(1)), 0, "sent twice");
    let message_id: Option<String> = sqlx::query_scalar(
        "SELECT message_id FROM deliveries WHERE send_id = $1::uuid AND address = $2",
    )
    .bind(&send.id)
    .bind(number(1))
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(message_id, None, "the provider's id never arrived");
}
