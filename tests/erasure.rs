//! GDPR erasure (SPEC §5.3): after erasing a guest, no text, varchar, json or jsonb column (or
//! text array) of any table holds their address — found generically through
//! `information_schema`, so tables added later are searched too — while the guest stays
//! suppressed and other guests' data is untouched.

mod support;

use serde_json::{Value, json};
use wedsync_db::testing::TestDb;
use wedsync_kinds::erasure::{ErasureRecord, ErasureRequest, LOCATIONS, erase};
use wedsync_kinds::suppression::{Address, Channel, Reason, SuppressionList};

const EMAIL: &str = "guest.one+rsvp@example.com";
const PHONE: &str = "+447700900123";

fn request(org_id: Option<&str>) -> ErasureRequest {
    ErasureRequest {
        org_id: org_id.map(str::to_owned),
        email: Some(Address::parse(Channel::Email, "  Guest.One+RSVP@Example.com").unwrap()),
        phone: Some(Address::parse(Channel::Sms, "+44 7700 900123").unwrap()),
        requested_by: "hq".to_owned(),
    }
}

async fn exec(db: &TestDb, sql: &'static str) {
    sqlx::query(sql).execute(&db.pool).await.expect(sql);
}

/// The guest (in mixed case) in every place that can hold an address today.
async fn seed_guest_everywhere(db: &TestDb) {
    exec(
        db,
        r#"INSERT INTO jobs (queue, kind, args, state, errors, unique_key, org_id) VALUES
            ('messages', 'send_email', '{"to": "Guest.One+RSVP@example.com", "vars": {"phone": "+447700900123"}}',
             'available', '[]', 'invite:guest.one+rsvp@example.com', 'acme'),
            ('messages', 'send_email', '{"to": "guest.one+rsvp@EXAMPLE.com"}', 'retryable',
             '[{"attempt": 1, "error": "452 mailbox\nguest.one+rsvp@example.com full"}]', NULL, 'acme')"#,
    )
    .await;
    exec(
        db,
        r#"INSERT INTO jobs_finished (id, queue, kind, args, state, priority, attempt, max_attempts,
                                      scheduled_at, created_at, errors, unique_key, org_id, result)
           VALUES (900001, 'messages', 'send_email', '{"to": ["GUEST.ONE+RSVP@example.com", "+447700900123"]}',
                   'completed', 5, 1, 20, now(), now(), '[]', 'invite2:Guest.One+rsvp@example.com', 'acme',
                   '{"sent_to": "guest.one+rsvp@example.com"}'),
                  (900002, 'messages', 'send_sms', '{"to": "+447700900123"}', 'discarded', 5, 3, 3, now(), now(),
                   '[{"error": "provider refused +447700900123"}]', NULL, 'other', NULL)"#,
    )
    .await;
    exec(
        db,
        r#"INSERT INTO idempotency_keys (org_id, key, request_hash, status, response) VALUES
            ('acme', 'k1', 'h', 201, '{"address": "guest.one+rsvp@example.com", "channel": "email"}')"#,
    )
    .await;
    exec(
        db,
        "INSERT INTO weddings (org_id, name, local_date, local_start, timezone, starts_at)
         VALUES ('acme', 'Wedding of Guest.One+RSVP@example.com', '2027-06-05', '14:00', 'Europe/London', now())",
    )
    .await;
    exec(
        db,
        "INSERT INTO pools (queue, concurrency, reason) VALUES ('messages', 5, 'slow for guest.one+rsvp@example.com')",
    )
    .await;
    exec(
        db,
        r#"WITH sender AS (
               INSERT INTO senders (org_id, name, email, postal_address)
               VALUES ('acme', 'Ann', 'hello@ann.example', '1 Chapel Lane') RETURNING id)
           INSERT INTO bulk_sends (id, org_id, channel, category, sender_id, subject_template,
                                   text_template, recipients, recipient_count)
           SELECT '00000000-0000-0000-0000-000000000001', 'acme', 'email', 'marketing', id, 's', 't',
                  '[{"address": "guest.one+rsvp@example.com", "variables": {"name": "Guestina Onewell"}},
                    {"address": "olga@example.com",
                     "variables": {"name": "Olga", "plus_one": "Guest.One+RSVP@example.com"}}]', 2
             FROM sender"#,
    )
    .await;
    // Another guest's delivery that names the guest: as a plus-one, in an error, in the body.
    sqlx::query(
        "WITH delivery AS (
             INSERT INTO deliveries (send_id, ordinal, address, address_hash, variables, last_error)
             VALUES ('00000000-0000-0000-0000-000000000001', 1, 'olga@example.com', $1,
                     '{\"plus_one\": \"guest.one+rsvp@example.com\"}',
                     '421 try later (cc guest.one+rsvp@example.com)')
             RETURNING id)
         INSERT INTO delivery_bodies (delivery_id, sent_at, subject, body_text, body_html)
         SELECT id, now(), 'Olga and guest.one+rsvp@example.com', 'Olga, bring Guest.One+RSVP@example.com',
                '<p>Olga, bring guest.one+rsvp@example.com</p>'
           FROM delivery",
    )
    .bind(Address::parse(Channel::Email, "olga@example.com").unwrap().hash())
    .execute(&db.pool)
    .await
    .expect("seed another guest's delivery");
    sqlx::query(
        "WITH delivery AS (
             INSERT INTO deliveries (send_id, ordinal, address, address_hash, variables)
             VALUES ('00000000-0000-0000-0000-000000000001', 0, 'guest.one+rsvp@example.com', $1,
                     '{\"phone\": \"+447700900123\"}')
             RETURNING id)
         INSERT INTO delivery_bodies (delivery_id, sent_at, body_text)
         SELECT id, now(), 'Dear Guest.One+RSVP@example.com' FROM delivery",
    )
    .bind(Address::parse(Channel::Email, EMAIL).unwrap().hash())
    .execute(&db.pool)
    .await
    .expect("seed a delivery");
    let list = SuppressionList::new(db.pool.clone());
    for (org, channel, raw, reason) in [
        (Some("acme"), Channel::Email, EMAIL, Reason::Unsubscribed),
        (Some("other"), Channel::Email, EMAIL, Reason::HardBounce),
        (None, Channel::Sms, PHONE, Reason::Complaint),
    ] {
        let address = Address::parse(channel, raw).unwrap();
        list.add(org, &address, reason).await.unwrap();
    }
}

/// Every (table, column, rows) whose text form contains `needle`, case-insensitively, over all
/// text-like columns of all tables of the database.
async fn rows_containing(db: &TestDb, needle: &str) -> Vec<(String, String, i64)> {
    let columns: Vec<(String, String)> = sqlx::query_as(
        "SELECT c.table_name::text, c.column_name::text
           FROM information_schema.columns c
           JOIN information_schema.tables t USING (table_schema, table_name)
          WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE'
            AND (c.data_type IN ('text', 'character varying', 'character', 'json', 'jsonb')
                 OR (c.data_type = 'ARRAY' AND c.udt_name IN ('_text', '_varchar')))",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert!(columns.len() > 20, "too few columns found: {columns:?}");
    let mut found = Vec::new();
    for (table, column) in columns {
        let sql = format!(
            "SELECT count(*) FROM \"{table}\" WHERE \"{column}\"::text ILIKE '%' || $1 || '%'"
        );
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(needle)
            .fetch_one(&db.pool)
            .await
            .unwrap();
        if n > 0 {
            found.push((table, column, n));
        }
    }
    found
}

#[tokio::test]
async fn no_column_of_any_table_holds_the_address_after_erasure() {
    let db = TestDb::new().await.unwrap();
    seed_guest_everywhere(&db).await;
    // The search finds what was seeded: it is not vacuous.
    let before = rows_containing(&db, EMAIL).await;
    assert!(before.len() >= 10, "{before:?}");
    assert!(!rows_containing(&db, PHONE).await.is_empty());
    assert!(!rows_containing(&db, "Guestina Onewell").await.is_empty());

    let record = erase(&db.pool, &request(None)).await.unwrap();

    assert_eq!(rows_containing(&db, EMAIL).await, []);
    assert_eq!(rows_containing(&db, PHONE).await, []);
    // Nor the variables that came with the guest's own recipient entry.
    assert_eq!(rows_containing(&db, "Guestina Onewell").await, []);
    let list = SuppressionList::new(db.pool.clone());
    for org in ["acme", "other", "an-org-never-seen"] {
        assert!(
            list.contains(org, Channel::Email, "  GUEST.one+rsvp@Example.COM\t")
                .await
                .unwrap()
        );
        assert!(
            list.contains(org, Channel::Sms, "+44 (7700) 900-123")
                .await
                .unwrap()
        );
    }
    let erased: Vec<(Option<String>, String, Option<String>)> = sqlx::query_as(
        "SELECT org_id, address_hash, address FROM suppressions WHERE reason = 'erased' ORDER BY channel",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let email_hash = request(None).email.unwrap().hash();
    let phone_hash = request(None).phone.unwrap().hash();
    assert_eq!(
        erased,
        [
            (None, email_hash.clone(), None),
            (None, phone_hash.clone(), None)
        ]
    );
    assert_eq!(record.email_hash.as_deref(), Some(email_hash.as_str()));
    assert_eq!(record.phone_hash.as_deref(), Some(phone_hash.as_str()));
    assert_counts(&record);
}

/// Row updates per location, summed over the two addresses (a row holding both counts twice).
fn assert_counts(record: &ErasureRecord) {
    let expected = json!({
        "jobs.args": 3, "jobs.errors": 1, "jobs.unique_key": 1,
        "jobs_finished.args": 3, "jobs_finished.errors": 1, "jobs_finished.result": 1,
        "jobs_finished.unique_key": 1, "idempotency_keys.response": 1,
        "weddings.name": 1, "pools.reason": 1,
        "bulk_sends.recipient": 1, "bulk_sends.recipients": 1, "deliveries": 1,
        "deliveries.variables": 1, "deliveries.last_error": 1, "delivery_bodies.subject": 1,
        "delivery_bodies.body_text": 1, "delivery_bodies.body_html": 1,
        // Acme's and the other org's email entries, and the global phone entry that the
        // erasure then turned into the `erased` one.
        "suppressions.address": 3,
    });
    assert_eq!(serde_json::to_value(&record.counts).unwrap(), expected);
    assert_eq!(record.counts.len(), LOCATIONS.len() + 1);
}

#[tokio::test]
async fn the_rows_stay_with_the_address_redacted_and_unique_keys_still_distinct() {
    let db = TestDb::new().await.unwrap();
    seed_guest_everywhere(&db).await;
    erase(&db.pool, &request(None)).await.unwrap();

    let args: Vec<Value> = sqlx::query_scalar("SELECT args FROM jobs ORDER BY id")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert_eq!(
        args,
        [
            json!({"to": "[erased]", "vars": {"phone": "[erased]"}}),
            json!({"to": "[erased]"})
        ]
    );
    let finished: Value = sqlx::query_scalar("SELECT args FROM jobs_finished WHERE id = 900001")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(finished, json!({"to": ["[erased]", "[erased]"]}));
    // The guest's entry in the send keeps its place (Olga keeps ordinal 1) without its
    // variables; Olga's own entry keeps hers, the guest's address in them redacted.
    let recipients: Value = sqlx::query_scalar("SELECT recipients FROM bulk_sends")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(
        recipients,
        json!([
            {"address": "[erased]"},
            {"address": "olga@example.com", "variables": {"name": "Olga", "plus_one": "[erased]"}}
        ])
    );
    let olga: (Value, String, String) = sqlx::query_as(
        "SELECT d.variables, d.last_error, b.body_text
           FROM deliveries d JOIN delivery_bodies b ON b.delivery_id = d.id",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        olga,
        (
            json!({"plus_one": "[erased]"}),
            "421 try later (cc [erased])".to_owned(),
            "Olga, bring [erased]".to_owned()
        )
    );
    let keys: Vec<String> =
        sqlx::query_scalar("SELECT unique_key FROM all_jobs WHERE unique_key IS NOT NULL")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(keys.len(), 2);
    assert!(
        keys.iter()
            .all(|k| k.starts_with("erased:") && k.len() == 7 + 64),
        "{keys:?}"
    );
    assert_ne!(keys[0], keys[1]);
    // Entries of other reasons keep their reason, without the address.
    let kept: Vec<(Option<String>, String, Option<String>)> = sqlx::query_as(
        "SELECT org_id, reason, address FROM suppressions WHERE reason <> 'erased' ORDER BY org_id",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        kept,
        [
            (Some("acme".into()), "unsubscribed".into(), None),
            (Some("other".into()), "hard_bounce".into(), None),
        ]
    );
}

#[tokio::test]
async fn other_guests_and_longer_addresses_are_left_alone() {
    let db = TestDb::new().await.unwrap();
    let near_misses = json!({
        "a": "jim.guest.one+rsvp@example.com",
        "b": "guest.one+rsvp@example.com.au",
        "c": "guest.one+rsvp@example.community",
        "d": "+4477009001234",
        "e": "+1447700900123",
        "f": "guest.one@example.com",
        "g": "o'guest.one+rsvp@example.com",
        "h": "x&guest.one+rsvp@example.com",
        "i": "élodie.guest.one+rsvp@example.com",
    });
    sqlx::query("INSERT INTO jobs (queue, kind, args) VALUES ('q', 'k', $1)")
        .bind(&near_misses)
        .execute(&db.pool)
        .await
        .unwrap();
    let record = erase(&db.pool, &request(None)).await.unwrap();

    let args: Value = sqlx::query_scalar("SELECT args FROM jobs")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(args, near_misses);
    assert!(
        record.counts.values().all(|n| *n == 0),
        "{:?}",
        record.counts
    );
}

#[tokio::test]
async fn erasing_twice_finds_nothing_more_and_keeps_one_entry() {
    let db = TestDb::new().await.unwrap();
    seed_guest_everywhere(&db).await;
    let first = erase(&db.pool, &request(None)).await.unwrap();
    let second = erase(&db.pool, &request(None)).await.unwrap();

    assert!(
        second.counts.values().all(|n| *n == 0),
        "{:?}",
        second.counts
    );
    assert_eq!(first.suppression_ids, second.suppression_ids);
    let (erasures, erased): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM erasures),
                (SELECT count(*) FROM suppressions WHERE reason = 'erased')",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!((erasures, erased), (2, 2));
    let stored: Value = sqlx::query_scalar("SELECT counts FROM erasures WHERE id = $1")
        .bind(first.id)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(stored, serde_json::to_value(&first.counts).unwrap());
}

#[tokio::test]
async fn an_organisations_erasure_suppresses_in_its_list_and_erases_everywhere() {
    let db = TestDb::new().await.unwrap();
    seed_guest_everywhere(&db).await;
    erase(&db.pool, &request(Some("acme"))).await.unwrap();

    assert_eq!(rows_containing(&db, EMAIL).await, []);
    let list = SuppressionList::new(db.pool.clone());
    assert!(list.contains("acme", Channel::Email, EMAIL).await.unwrap());
    // "other" had its own hard-bounce entry, which stays (without the address).
    assert!(list.contains("other", Channel::Email, EMAIL).await.unwrap());
    assert!(!list.contains("third", Channel::Email, EMAIL).await.unwrap());
    let acme: (String, Option<String>) = sqlx::query_as(
        "SELECT reason, address FROM suppressions WHERE org_id = 'acme' AND channel = 'email'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(acme, ("erased".to_owned(), None));
}

/// Entries of the list that hold `address` readable, in any scope.
async fn readable_entries(db: &TestDb, address: &Address) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM suppressions WHERE address_hash = $1 AND address IS NOT NULL",
    )
    .bind(address.hash())
    .fetch_one(&db.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn an_entry_added_in_another_list_while_an_erasure_runs_does_not_keep_the_address() {
    let db = TestDb::new().await.unwrap();
    let erasure = ErasureRequest {
        phone: None,
        ..request(None)
    };
    let email = erasure.email.clone().unwrap();
    // Hold the erasure at its last statement, its transaction open, its entry not yet visible.
    let mut hold = db.pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE erasures IN EXCLUSIVE MODE")
        .execute(&mut *hold)
        .await
        .unwrap();
    let erasing = tokio::spawn({
        let pool = db.pool.clone();
        async move { erase(&pool, &erasure).await }
    });
    support::wait_for_activity(
        &db,
        "the erasure waiting to record itself",
        "wait_event_type = 'Lock' AND query LIKE 'INSERT INTO erasures%'",
    )
    .await;
    // A hard bounce for the guest in an organisation's list, meanwhile.
    let adding = tokio::spawn({
        let list = SuppressionList::new(db.pool.clone());
        let email = email.clone();
        async move { list.add(Some("acme"), &email, Reason::HardBounce).await }
    });
    support::wait_for(
        "the entry added, or waiting for the erasure",
        std::time::Duration::from_secs(10),
        || async {
            let waiting: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM pg_stat_activity
                                 WHERE datname = current_database() AND wait_event = 'advisory')",
            )
            .fetch_one(&db.pool)
            .await
            .unwrap();
            (waiting || adding.is_finished()).then_some(())
        },
    )
    .await;
    hold.commit().await.unwrap();
    erasing.await.unwrap().unwrap();
    let added = adding.await.unwrap().unwrap();
    assert_eq!(added.entry.address, None);
    assert_eq!(readable_entries(&db, &email).await, 0);
}
