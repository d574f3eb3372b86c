//! The bulk-messages family's run-time context from the settings: each channel's primary
//! provider (pooled SMTP when `WEDSYNC_SMTP_URL` is set, else the outbox folder under
//! `WEDSYNC_DATA_DIR`), its optional secondary, their breakers and rate limits.

use crate::Failure;
use crate::settings::Settings;
use sqlx::PgPool;
use wedsync_kinds::messages::MessagesContext;
use wedsync_kinds::messages::providers::{
    BreakerConfig, EmailTransport, Provider, ProviderRole, Providers,
};

/// Built once per worker process; providers are shared by every delivery job.
pub fn context(settings: &Settings, pool: &PgPool) -> Result<MessagesContext, Failure> {
    let m = &settings.messages;
    let breaker = BreakerConfig {
        failure_threshold: m.breaker_failures,
        open_for: m.breaker_open,
    };
    let limited = |provider: Provider, rate: Option<f64>| match rate {
        Some(per_second) => provider.with_rate_limit(pool.clone(), per_second),
        None => provider,
    };
    let smtp = |setting: &str, url: &url::Url| {
        EmailTransport::smtp(setting, url.as_str(), m.smtp_pool_size)
            .map_err(|e| Failure::Usage(e.into()))
    };
    let primary = match &settings.smtp_url {
        Some(url) => smtp("WEDSYNC_SMTP_URL", url)?,
        None => EmailTransport::outbox(settings.data_dir.join("outbox")),
    };
    let mut providers = Providers::new().with(limited(
        Provider::email(ProviderRole::Primary, primary, breaker),
        m.smtp_rate,
    ));
    if let Some(url) = &m.smtp_secondary_url {
        let secondary = smtp("WEDSYNC_SMTP_SECONDARY_URL", url)?;
        providers = providers.with(limited(
            Provider::email(ProviderRole::Secondary, secondary, breaker),
            m.smtp_secondary_rate,
        ));
    }
    let mut context = MessagesContext::new(providers);
    context.sms_from = m.sms_from.clone();
    context.chunk_size = m.chunk_size as usize;
    if let Some(url) = &settings.public_url {
        context.public_url = url.as_str().trim_end_matches('/').to_owned();
    }
    Ok(context)
}
