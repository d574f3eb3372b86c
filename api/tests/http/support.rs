//! `TestApp`: a fresh database, the API serving it on 127.0.0.1:0, and keys to call it with.

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use reqwest::{RequestBuilder, Response, StatusCode};
use serde_json::Value;
use std::sync::OnceLock;
use wedsync_api::{ApiState, Role, keys, telemetry};
use wedsync_db::testing::TestDb;
use wedsync_kinds::suppression::{Address, Channel};
use wedsync_queue::KindInfo;

pub struct TestApp {
    pub db: TestDb,
    pub base: String,
    pub client: reqwest::Client,
    /// An operator key of org `ops`.
    pub operator: String,
}

/// The process-wide recorder: macros record only into a global one, and every test in this
/// binary shares it (it is installed once).
fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            telemetry::configure_prometheus(PrometheusBuilder::new())
                .and_then(PrometheusBuilder::install_recorder)
                .expect("install the Prometheus recorder")
        })
        .clone()
}

pub fn noop_kind() -> KindInfo {
    KindInfo {
        kind: "noop",
        queue: "default",
        priority: 5,
        max_attempts: 20,
    }
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(|state| state).await
    }

    /// Like [`TestApp::spawn`], with the state adjusted by `configure` (e.g. schedules).
    pub async fn spawn_with(configure: impl FnOnce(ApiState) -> ApiState) -> TestApp {
        let db = TestDb::new().await.expect("create a test database");
        let state = configure(ApiState::new(
            db.pool.clone(),
            vec![noop_kind()],
            prometheus(),
        ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(wedsync_api::serve(listener, state, std::future::pending()));
        let operator = keys::create_key(&db.pool, "ops", Role::Operator)
            .await
            .unwrap();
        TestApp {
            db,
            base,
            client: reqwest::Client::new(),
            operator,
        }
    }

    pub async fn key(&self, org: &str, role: Role) -> String {
        keys::create_key(&self.db.pool, org, role).await.unwrap()
    }

    pub fn get(&self, path: &str, key: &str) -> RequestBuilder {
        self.client
            .get(format!("{}{path}", self.base))
            .bearer_auth(key)
    }

    pub fn post(&self, path: &str, key: &str) -> RequestBuilder {
        self.client
            .post(format!("{}{path}", self.base))
            .bearer_auth(key)
    }

    /// Enqueue as the operator and return the created job.
    pub async fn enqueue(&self, body: Value) -> Value {
        let response = self
            .post("/v1/jobs", &self.operator)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        response.json().await.unwrap()
    }

    /// The `/metrics` page (no key needed).
    pub async fn metrics(&self) -> String {
        self.client
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub async fn job_count(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM all_jobs")
            .fetch_one(&self.db.pool)
            .await
            .unwrap()
    }
}

/// Assert `response` is a problem document with `status` and `code`; return its body.
pub async fn problem(response: Response, status: StatusCode, code: &str) -> Value {
    assert_eq!(response.status(), status);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(content_type, "application/problem+json");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status.as_u16());
    for field in ["type", "title", "detail"] {
        assert!(body[field].is_string(), "problem without {field}: {body}");
    }
    body
}

/// A marketing email send of `org` with one delivery to `raw_address` (stored normalised), as
/// `sent`; returns the send's id and the delivery's.
pub async fn seed_sent_delivery(app: &TestApp, org: &str, raw_address: &str) -> (String, i64) {
    let pool = &app.db.pool;
    let sender: i64 = sqlx::query_scalar(
        "INSERT INTO senders (org_id, name, email, postal_address) \
         VALUES ($1, 'Acme Weddings', 'hello@acme.test', '1 High Street, Bath') \
         ON CONFLICT ON CONSTRAINT senders_identity_key DO UPDATE SET name = EXCLUDED.name \
         RETURNING id",
    )
    .bind(org)
    .fetch_one(pool)
    .await
    .unwrap();
    let send = uuid::Uuid::new_v4().to_string();
    sqlx::query(
        "INSERT INTO bulk_sends (id, org_id, channel, category, sender_id, subject_template, \
                                 text_template, recipient_count) \
         VALUES ($1::uuid, $2, 'email', 'marketing', $3, 'News', 'Hello', 1)",
    )
    .bind(&send)
    .bind(org)
    .bind(sender)
    .execute(pool)
    .await
    .unwrap();
    let address = Address::parse(Channel::Email, raw_address).unwrap();
    let delivery = sqlx::query_scalar(
        "INSERT INTO deliveries (send_id, ordinal, address, address_hash, status) \
         VALUES ($1::uuid, 0, $2, $3, 'sent') RETURNING id",
    )
    .bind(&send)
    .bind(address.as_str())
    .bind(address.hash())
    .fetch_one(pool)
    .await
    .unwrap();
    (send, delivery)
}
