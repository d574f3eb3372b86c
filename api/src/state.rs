//! What every handler shares.

use metrics_exporter_prometheus::PrometheusHandle;
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;
use wedsync_kinds::messages::unsubscribe::SigningKey;
use wedsync_queue::{KindInfo, Queue};

/// Pool concurrency given to a queue that gets its first pool row from the API (pause/resume).
pub const DEFAULT_CONCURRENCY: i32 = 10;

/// Shared state of the API; cheap to clone.
#[derive(Clone)]
pub struct ApiState {
    pub pool: PgPool,
    pub queue: Queue,
    /// The job kinds `POST /v1/jobs` accepts, with their default queue, priority and attempts.
    pub kinds: Arc<Vec<KindInfo>>,
    /// Renders the process's metrics for `GET /metrics`.
    pub prometheus: PrometheusHandle,
    pub default_concurrency: i32,
    /// `GET /readyz` fails when a queue's oldest available job is older than this; `None` only
    /// reports the lag. Off by default: a backlog is the workers' problem, and taking API pods
    /// out of service would not help it.
    pub ready_max_lag: Option<Duration>,
    /// The cron entries of the configuration, for `/v1/schedules`.
    pub schedules: Arc<Vec<wedsync_scheduler::Entry>>,
    /// Where a raw metric event per request goes (SPEC §5.4); `None` records none.
    pub events: Option<wedsync_metrics::EventSink>,
    /// Wall clock of the pool rules (season, Saturday window) when the API applies a pool change.
    pub timezone: chrono_tz::Tz,
    /// Where `POST /v1/photos` stores originals and how large one may be; `None` (a state
    /// built without it, e.g. in tests of other routes) answers uploads with a logged 500.
    pub photos: Option<PhotoUploads>,
    /// Verifies the tokens of `/unsubscribe` links (the workers sign them with the same key);
    /// `None` answers those requests with a logged 500.
    pub signing_key: Option<SigningKey>,
    /// `WEDSYNC_PUBLIC_URL` without its trailing `/`, as the workers build unsubscribe links
    /// with it: validation measures a marketing SMS with a link of the real length.
    pub public_url: String,
    /// The SMS providers' auth tokens, which sign their webhooks (`/v1/sms/…`); empty: every
    /// webhook is refused.
    pub sms_webhook_tokens: wedsync_kinds::messages::sms_webhook::WebhookTokens,
}

/// Photo upload settings of the API.
#[derive(Clone, Debug)]
pub struct PhotoUploads {
    pub storage: wedsync_kinds::storage::Storage,
    /// The largest original accepted, in bytes (`WEDSYNC_MAX_UPLOAD_BYTES`).
    pub max_upload_bytes: u64,
}

impl ApiState {
    pub fn new(
        pool: PgPool,
        kinds: impl IntoIterator<Item = KindInfo>,
        prometheus: PrometheusHandle,
    ) -> Self {
        ApiState {
            queue: Queue::new(pool.clone()),
            pool,
            kinds: Arc::new(kinds.into_iter().collect()),
            prometheus,
            default_concurrency: DEFAULT_CONCURRENCY,
            ready_max_lag: None,
            schedules: Arc::new(Vec::new()),
            events: None,
            timezone: chrono_tz::Tz::UTC,
            photos: None,
            signing_key: None,
            public_url: wedsync_kinds::messages::DEFAULT_PUBLIC_URL.to_owned(),
            sms_webhook_tokens: Default::default(),
        }
    }

    pub fn with_default_concurrency(mut self, concurrency: i32) -> Self {
        self.default_concurrency = concurrency;
        self
    }

    pub fn with_schedules(mut self, entries: Vec<wedsync_scheduler::Entry>) -> Self {
        self.schedules = Arc::new(entries);
        self
    }

    /// Record a raw metric event per request into `sink`.
    pub fn with_events(mut self, sink: wedsync_metrics::EventSink) -> Self {
        self.events = Some(sink);
        self
    }

    pub fn with_timezone(mut self, timezone: chrono_tz::Tz) -> Self {
        self.timezone = timezone;
        self
    }

    pub fn with_photo_uploads(mut self, photos: PhotoUploads) -> Self {
        self.photos = Some(photos);
        self
    }

    pub fn with_signing_key(mut self, key: SigningKey) -> Self {
        self.signing_key = Some(key);
        self
    }

    pub fn with_public_url(mut self, url: &str) -> Self {
        self.public_url = url.trim_end_matches('/').to_owned();
        self
    }

    pub fn with_sms_webhook_tokens(
        mut self,
        tokens: wedsync_kinds::messages::sms_webhook::WebhookTokens,
    ) -> Self {
        self.sms_webhook_tokens = tokens;
        self
    }

    pub fn with_ready_max_lag(mut self, lag: Duration) -> Self {
        self.ready_max_lag = Some(lag);
        self
    }

    /// The registered kind called `name`.
    pub fn kind(&self, name: &str) -> Option<&KindInfo> {
        self.kinds.iter().find(|k| k.kind == name)
    }
}
