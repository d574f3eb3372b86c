//! `Debug` output of [`Settings`] with its secrets redacted.

use super::Settings;
use std::fmt;
use url::Url;

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = |u: &Option<Url>| u.as_ref().map(redact_url);
        f.debug_struct("Settings")
            .field("database_url", &self.database_url)
            .field("db_pool_size", &self.db_pool_size)
            .field("listen", &self.listen)
            .field("smtp_url", &url(&self.smtp_url))
            .field("sms_url", &url(&self.sms_url))
            .field("storage_url", &url(&self.storage_url))
            .field("public_url", &url(&self.public_url))
            .field("signing_key", &self.signing_key)
            .field("timezone", &self.timezone)
            .field("log_format", &self.log_format)
            .field("log_filter", &self.log_filter)
            .field("data_dir", &self.data_dir)
            .field("worker", &self.worker)
            .field("metric_events", &self.metric_events)
            .field("photos", &self.photos)
            .field(
                "messages",
                &format_args!(
                    "{{ smtp_secondary_url: {:?}, sms_secondary_url: {:?}, .. }}",
                    url(&self.messages.smtp_secondary_url),
                    url(&self.messages.sms_secondary_url)
                ),
            )
            .field("queues", &self.queues)
            .field("schedule", &self.schedule)
            .finish()
    }
}

/// A URL for display: its password and query values replaced by `***`.
fn redact_url(url: &Url) -> String {
    let mut url = url.clone();
    if url.password().is_some() {
        let _ = url.set_password(Some("***"));
    }
    if url.query().is_some() {
        let keys: Vec<String> = url.query_pairs().map(|(k, _)| k.into_owned()).collect();
        url.query_pairs_mut()
            .clear()
            .extend_pairs(keys.iter().map(|k| (k.as_str(), "***")));
    }
    url.to_string()
}
