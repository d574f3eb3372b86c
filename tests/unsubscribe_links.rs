//! Unsubscribe links against a real PostgreSQL: the embedded-default signing key shared through
//! the database, and what following a link does to the suppression list.

use std::sync::Arc;
use tokio::sync::Barrier;
use wedsync_db::testing::TestDb;
use wedsync_kinds::messages::unsubscribe::{SigningKey, UnsubscribeClaim, unsubscribe};
use wedsync_kinds::suppression::{Address, Channel, Reason, SuppressionList};

const ORG: &str = "acme";

fn guest() -> Address {
    Address::parse(Channel::Email, "Guest@Example.com").unwrap()
}

/// A marketing send of `ORG` with one delivery to the guest; the claim of its link.
async fn seed_delivery(db: &TestDb) -> UnsubscribeClaim {
    let sender: i64 = sqlx::query_scalar(
        "INSERT INTO senders (org_id, name, email, postal_address) \
         VALUES ($1, 'Acme', 'hello@acme.test', '1 High Street') RETURNING id",
    )
    .bind(ORG)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    let send = uuid::Uuid::new_v4().to_string();
    sqlx::query(
        "INSERT INTO bulk_sends (id, org_id, channel, category, sender_id, subject_template, \
                                 text_template, recipient_count) \
         VALUES ($1::uuid, $2, 'email', 'marketing', $3, 'News', 'Hello', 1)",
    )
    .bind(&send)
    .bind(ORG)
    .bind(sender)
    .execute(&db.pool)
    .await
    .unwrap();
    let delivery_id = sqlx::query_scalar(
        "INSERT INTO deliveries (send_id, ordinal, address, address_hash) \
         VALUES ($1::uuid, 0, $2, $3) RETURNING id",
    )
    .bind(&send)
    .bind(guest().as_str())
    .bind(guest().hash())
    .fetch_one(&db.pool)
    .await
    .unwrap();
    UnsubscribeClaim {
        delivery_id,
        org_id: ORG.to_owned(),
        channel: Channel::Email,
        address_hash: guest().hash(),
    }
}

fn claim() -> UnsubscribeClaim {
    UnsubscribeClaim {
        delivery_id: 1,
        org_id: ORG.to_owned(),
        channel: Channel::Email,
        address_hash: guest().hash(),
    }
}

async fn stored_keys(db: &TestDb) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM signing_keys")
        .fetch_one(&db.pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn processes_loading_the_key_at_once_all_get_the_same_one() {
    let db = TestDb::new().await.unwrap();
    let racers = 8;
    let barrier = Arc::new(Barrier::new(racers));
    let tasks: Vec<_> = (0..racers)
        .map(|_| {
            let (pool, barrier) = (db.pool.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                SigningKey::load_or_create(&pool).await.unwrap()
            })
        })
        .collect();
    let mut keys = Vec::new();
    for task in tasks {
        keys.push(task.await.unwrap());
    }
    let token = keys[0].sign(&claim());
    for key in &keys {
        assert_eq!(key.verify(&token), Ok(claim()));
    }
    assert_eq!(stored_keys(&db).await, 1);
}

#[tokio::test]
async fn a_later_load_returns_the_stored_key() {
    let db = TestDb::new().await.unwrap();
    let first = SigningKey::load_or_create(&db.pool).await.unwrap();
    let token = first.sign(&claim());
    let again = SigningKey::load_or_create(&db.pool).await.unwrap();
    assert_eq!(again.verify(&token), Ok(claim()));
    let secret: Vec<u8> =
        sqlx::query_scalar("SELECT secret FROM signing_keys WHERE name = 'unsubscribe'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(secret.len(), 32);
    assert_eq!(
        SigningKey::new(&secret).unwrap().verify(&token),
        Ok(claim())
    );
}

#[tokio::test]
async fn unsubscribing_stores_the_readable_address_once() {
    let db = TestDb::new().await.unwrap();
    let claim = seed_delivery(&db).await;
    assert!(unsubscribe(&db.pool, &claim).await.unwrap(), "created");
    assert!(
        !unsubscribe(&db.pool, &claim).await.unwrap(),
        "already there"
    );
    let entry = SuppressionList::new(db.pool.clone())
        .find(Some(ORG), &guest())
        .await
        .unwrap()
        .expect("an entry");
    assert_eq!(entry.reason, "unsubscribed");
    assert_eq!(entry.address.as_deref(), Some("guest@example.com"));
}

#[tokio::test]
async fn an_erased_guest_who_unsubscribes_stays_unreadable() {
    let db = TestDb::new().await.unwrap();
    let claim = seed_delivery(&db).await;
    let list = SuppressionList::new(db.pool.clone());
    list.add(None, &guest(), Reason::Erased).await.unwrap();
    assert!(unsubscribe(&db.pool, &claim).await.unwrap());
    let entry = list.find(Some(ORG), &guest()).await.unwrap().unwrap();
    assert_eq!(entry.reason, "unsubscribed");
    assert_eq!(entry.address, None);
}

#[tokio::test]
async fn a_claim_not_matching_its_delivery_is_stored_by_hash_alone() {
    let db = TestDb::new().await.unwrap();
    let delivered = seed_delivery(&db).await;
    // The delivery id of another organisation's link: that delivery's address is not used.
    let other = UnsubscribeClaim {
        org_id: "other-org".to_owned(),
        ..delivered
    };
    assert!(unsubscribe(&db.pool, &other).await.unwrap());
    let entry = SuppressionList::new(db.pool.clone())
        .find(Some("other-org"), &guest())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(entry.address, None);
}
