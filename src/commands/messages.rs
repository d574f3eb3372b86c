//! The bulk-messages family's run-time context from the settings: pooled SMTP when
//! `WEDSYNC_SMTP_URL` is set, else the outbox folder under `WEDSYNC_DATA_DIR`.

use crate::Failure;
use crate::settings::Settings;
use wedsync_kinds::messages::{Mailer, MessagesContext};

/// Built once per worker process; the SMTP pool is shared by every delivery job.
pub fn context(settings: &Settings) -> Result<MessagesContext, Failure> {
    let mailer = match &settings.smtp_url {
        Some(url) => Mailer::smtp(url.as_str()).map_err(|e| Failure::Usage(e.into()))?,
        None => Mailer::outbox(settings.data_dir.join("outbox")),
    };
    let mut context = MessagesContext {
        mailer,
        ..MessagesContext::default()
    };
    if let Some(url) = &settings.public_url {
        context.public_url = url.as_str().trim_end_matches('/').to_owned();
    }
    Ok(context)
}
