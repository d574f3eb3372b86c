//! The bulk-messages family's run-time context from the settings: each channel's primary
//! provider (pooled SMTP when `WEDSYNC_SMTP_URL` is set, else the outbox folder under
//! `WEDSYNC_DATA_DIR`), its optional secondary, their breakers and rate limits.

use crate::Failure;
use crate::settings::Settings;
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;
use wedsync_kinds::messages::MessagesContext;
use wedsync_kinds::messages::providers::{
    BreakerConfig, EmailTransport, Provider, ProviderRole, Providers, SmsClient, SmsOutbox,
    SmsTransport,
};

/// How long one request to the SMS provider may take.
const SMS_TIMEOUT: Duration = Duration::from_secs(10);

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
        let roots = m.smtp_ca.as_ref().map(|ca| ca.pem.as_slice());
        EmailTransport::smtp(setting, url.as_str(), m.smtp_pool_size, roots)
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
    let sms = |setting: &str, url: &url::Url| -> Result<Arc<dyn SmsTransport>, Failure> {
        let client = SmsClient::new(url, SMS_TIMEOUT)
            .map_err(|e| Failure::Usage(anyhow::anyhow!("{setting} {e}")))?;
        Ok(Arc::new(client))
    };
    let primary: Arc<dyn SmsTransport> = match &settings.sms_url {
        Some(url) => sms("WEDSYNC_SMS_URL", url)?,
        None => Arc::new(SmsOutbox::new(settings.data_dir.join("sms-outbox"))),
    };
    providers = providers.with(limited(
        Provider::sms(ProviderRole::Primary, primary, breaker),
        m.sms_rate,
    ));
    if let Some(url) = &m.sms_secondary_url {
        providers = providers.with(limited(
            Provider::sms(
                ProviderRole::Secondary,
                sms("WEDSYNC_SMS_SECONDARY_URL", url)?,
                breaker,
            ),
            m.sms_secondary_rate,
        ));
    }
    let mut context =
        MessagesContext::new(providers).with_unrecorded_limit(m.unrecorded_limit as usize);
    context.sms_from = m.sms_from.clone();
    context.bounce_address = m.bounce_address.clone();
    context.chunk_size = m.chunk_size as usize;
    if let Some(url) = &settings.public_url {
        context.public_url = url.as_str().trim_end_matches('/').to_owned();
        context.sms_status_callback = Some(format!(
            "{}{}",
            context.public_url,
            wedsync_kinds::messages::sms_webhook::STATUS_PATH
        ));
    }
    Ok(context)
}
