//! `SuppressionList`, as the bulk-messages family calls it at send time: an organisation's own
//! entries and global ones match, whatever the case or spacing of the address asked about.

use wedsync_db::testing::TestDb;
use wedsync_kinds::suppression::{Address, Channel, Reason, SuppressionError, SuppressionList};

fn email(raw: &str) -> Address {
    Address::parse(Channel::Email, raw).unwrap()
}

#[tokio::test]
async fn an_organisations_entry_suppresses_only_there_and_a_global_one_everywhere() {
    let db = TestDb::new().await.unwrap();
    let list = SuppressionList::new(db.pool.clone());
    list.add(
        Some("acme"),
        &email("Unsub@Example.com"),
        Reason::Unsubscribed,
    )
    .await
    .unwrap();
    list.add(None, &email("bounce@example.com"), Reason::HardBounce)
        .await
        .unwrap();

    assert!(
        list.contains("acme", Channel::Email, " UNSUB@example.com ")
            .await
            .unwrap()
    );
    assert!(
        !list
            .contains("other", Channel::Email, "unsub@example.com")
            .await
            .unwrap()
    );
    for org in ["acme", "other"] {
        assert!(
            list.contains(org, Channel::Email, "Bounce@Example.com")
                .await
                .unwrap()
        );
    }
    assert!(
        !list
            .contains("acme", Channel::Email, "fresh@example.com")
            .await
            .unwrap()
    );
    // The same address on another channel is another entry.
    assert!(
        !list
            .contains("acme", Channel::Sms, "+447700900123")
            .await
            .unwrap()
    );
    let invalid = list.contains("acme", Channel::Sms, "07700 900123").await;
    assert!(
        matches!(invalid, Err(SuppressionError::Address(_))),
        "{invalid:?}"
    );
}

#[tokio::test]
async fn adding_twice_keeps_one_entry_and_removing_ends_the_suppression() {
    let db = TestDb::new().await.unwrap();
    let list = SuppressionList::new(db.pool.clone());
    let phone = Address::parse(Channel::Sms, "+44 7700 900123").unwrap();
    let first = list
        .add(Some("acme"), &phone, Reason::Manual)
        .await
        .unwrap();
    let second = list
        .add(Some("acme"), &phone, Reason::Complaint)
        .await
        .unwrap();
    assert!(first.created && !second.created);
    assert_eq!(first.entry.id, second.entry.id);
    // The guest's own complaint takes the planner's manual entry's place.
    assert_eq!(
        (first.entry.reason.as_str(), second.entry.reason.as_str()),
        ("manual", "complaint")
    );
    let third = list
        .add(Some("acme"), &phone, Reason::Manual)
        .await
        .unwrap();
    assert_eq!(
        third.entry, second.entry,
        "a manual entry does not weaken it"
    );
    assert_eq!(first.entry.address.as_deref(), Some("+447700900123"));
    assert_eq!(first.entry.address_hash, Some(phone.hash()));

    // An erased entry is only removed when the caller says so.
    let erased = email("erased@example.com");
    list.add(None, &erased, Reason::Erased).await.unwrap();
    assert_eq!(
        list.find(None, &erased).await.unwrap().unwrap().address,
        None
    );
    assert_eq!(list.remove(None, &erased, false).await.unwrap(), None);
    assert!(list.remove(None, &erased, true).await.unwrap().is_some());

    // The complaint is the guest's: only an admin removes it.
    assert_eq!(
        list.remove(Some("acme"), &phone, false).await.unwrap(),
        None
    );
    let removed = list.remove(Some("acme"), &phone, true).await.unwrap();
    assert_eq!(removed.map(|e| e.id), Some(first.entry.id));
    assert!(
        !list
            .contains("acme", Channel::Sms, "+447700900123")
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn an_erased_guest_added_to_another_list_is_stored_without_the_address() {
    let db = TestDb::new().await.unwrap();
    let list = SuppressionList::new(db.pool.clone());
    let guest = email("guest@example.com");
    list.add(None, &guest, Reason::Erased).await.unwrap();
    let added = list
        .add(
            Some("acme"),
            &email(" Guest@Example.com"),
            Reason::Unsubscribed,
        )
        .await
        .unwrap();
    assert!(added.created);
    assert_eq!(added.entry.address, None);
    assert_eq!(added.entry.reason, "unsubscribed");
    // Another guest is stored readable as usual.
    let other = list
        .add(Some("acme"), &email("other@example.com"), Reason::Manual)
        .await
        .unwrap();
    assert_eq!(other.entry.address.as_deref(), Some("other@example.com"));
}

/// The send-time check is one lookup per delivery against lists of a million entries: it goes
/// through the hash index of migration 0013 (a bucket page per lookup), not a scan.
#[tokio::test]
async fn the_send_time_check_looks_entries_up_by_the_hash_index() {
    let db = TestDb::new().await.unwrap();
    let list = SuppressionList::new(db.pool.clone());
    for i in 0..50 {
        let address = email(&format!("guest{i}@example.com"));
        list.add(Some("acme"), &address, Reason::Unsubscribed)
            .await
            .unwrap();
    }
    let mut conn = db.pool.acquire().await.unwrap();
    // On 50 rows a scan costs less; the question is which index a lookup can use.
    sqlx::query("SET enable_seqscan = off")
        .execute(&mut *conn)
        .await
        .unwrap();
    let plan: Vec<String> = sqlx::query_scalar(
        "EXPLAIN SELECT EXISTS (
             SELECT 1 FROM suppressions
              WHERE address_hash = $1 AND channel = 'email' AND (org_id = 'acme' OR org_id IS NULL))",
    )
    .bind(email("guest7@example.com").hash())
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    let plan = plan.join("\n");
    assert!(
        plan.contains("suppressions_address_hash_idx"),
        "the lookup does not use the hash index:\n{plan}"
    );
}

#[tokio::test]
async fn a_guests_opt_out_does_not_take_over_an_admins_global_entry() {
    let db = TestDb::new().await.unwrap();
    let list = SuppressionList::new(db.pool.clone());
    let phone = Address::parse(Channel::Sms, "+44 7700 900123").unwrap();
    list.add(None, &phone, Reason::Manual).await.unwrap();
    // The guest's STOP: a global opt-out, which their START would remove.
    let stop = list.add(None, &phone, Reason::Unsubscribed).await.unwrap();
    assert!(!stop.created);
    assert_eq!(
        stop.entry.reason, "manual",
        "the admin's entry stays as it was"
    );
}
