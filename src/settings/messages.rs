//! Bulk-message providers beyond their primary URLs: secondaries, pool size, send-rate limits,
//! circuit breakers, the SMS sender id and how many messages a batch job sends at once.

use super::SettingsError;
use super::source::{Source, Value};
use super::values::parse_url;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;
use url::Url;
use wedsync_kinds::messages::email::Address;
use wedsync_kinds::messages::providers::{BreakerConfig, DEFAULT_POOL_SIZE};
use wedsync_kinds::messages::{DEFAULT_CHUNK_SIZE, DEFAULT_UNRECORDED_LIMIT};

/// The largest accepted rate, pool or chunk size; beyond it a value is a typo.
const MAX_RATE: f64 = 100_000.0;
const MAX_POOL: u64 = 1_000;
/// The longest an open breaker may wait before its probe: a day.
const MAX_OPEN_MS: u64 = 86_400_000;

#[derive(Debug, Clone, PartialEq)]
pub struct MessageSettings {
    /// `WEDSYNC_SMTP_SECONDARY_URL`: SMTP used while the primary's breaker is open.
    pub smtp_secondary_url: Option<Url>,
    /// `WEDSYNC_SMTP_POOL_SIZE` (default 10): SMTP connections per provider and worker process.
    pub smtp_pool_size: u32,
    /// `WEDSYNC_SMTP_CA_FILE`: certificates (PEM) trusted for SMTP over TLS besides the
    /// platform's roots, e.g. a private relay's own authority.
    pub smtp_ca: Option<TrustedCertificates>,
    /// `WEDSYNC_SMTP_RATE_PER_SECOND`: most messages per second to the primary SMTP, all worker
    /// processes together; unset: no limit.
    pub smtp_rate: Option<f64>,
    /// `WEDSYNC_SMTP_SECONDARY_RATE_PER_SECOND`.
    pub smtp_secondary_rate: Option<f64>,
    /// `WEDSYNC_SMS_SECONDARY_URL`.
    pub sms_secondary_url: Option<Url>,
    /// `WEDSYNC_SMS_RATE_PER_SECOND`.
    pub sms_rate: Option<f64>,
    /// `WEDSYNC_SMS_SECONDARY_RATE_PER_SECOND`.
    pub sms_secondary_rate: Option<f64>,
    /// `WEDSYNC_SMS_FROM` (default `WedSync`): the sender id or number SMS show.
    pub sms_from: String,
    /// `WEDSYNC_BOUNCE_ADDRESS`: the envelope sender (`MAIL FROM`) of every email, so that
    /// bounces reach a mailbox the operator pipes to `POST /v1/mail-reports`; unset: each
    /// send's own sender address.
    pub bounce_address: Option<Address>,
    /// `WEDSYNC_BREAKER_FAILURES` (default 5): consecutive provider failures that open a breaker.
    pub breaker_failures: u32,
    /// `WEDSYNC_BREAKER_OPEN_MS` (default 10000): how long an open breaker refuses calls before
    /// one probe may go.
    pub breaker_open: Duration,
    /// `WEDSYNC_MESSAGE_CHUNK` (default 100): the most deliveries a batch job sends at once
    /// (fewer while sending is slow, from 25 up).
    pub chunk_size: u32,
    /// `WEDSYNC_UNRECORDED_LIMIT` (default 4 × `WEDSYNC_SMTP_POOL_SIZE`): messages a worker
    /// process may have sent and not yet recorded as sent — the most a crash can duplicate.
    pub unrecorded_limit: u32,
}

impl Default for MessageSettings {
    fn default() -> Self {
        let breaker = BreakerConfig::default();
        MessageSettings {
            smtp_secondary_url: None,
            smtp_pool_size: DEFAULT_POOL_SIZE,
            smtp_ca: None,
            smtp_rate: None,
            smtp_secondary_rate: None,
            sms_secondary_url: None,
            sms_rate: None,
            sms_secondary_rate: None,
            sms_from: "WedSync".to_owned(),
            bounce_address: None,
            breaker_failures: breaker.failure_threshold,
            breaker_open: breaker.open_for,
            chunk_size: DEFAULT_CHUNK_SIZE as u32,
            unrecorded_limit: DEFAULT_UNRECORDED_LIMIT as u32,
        }
    }
}

impl MessageSettings {
    pub(super) fn read(source: &Source<'_>) -> Result<MessageSettings, SettingsError> {
        let d = MessageSettings::default();
        Ok(MessageSettings {
            smtp_secondary_url: smtp_url(source, "WEDSYNC_SMTP_SECONDARY_URL")?,
            smtp_pool_size: count(source, "WEDSYNC_SMTP_POOL_SIZE", d.smtp_pool_size, MAX_POOL)?,
            smtp_ca: match source.get("WEDSYNC_SMTP_CA_FILE", false)? {
                Some(v) => Some(TrustedCertificates::read(v)?),
                None => None,
            },
            smtp_rate: rate(source, "WEDSYNC_SMTP_RATE_PER_SECOND")?,
            smtp_secondary_rate: rate(source, "WEDSYNC_SMTP_SECONDARY_RATE_PER_SECOND")?,
            sms_secondary_url: sms_url(source, "WEDSYNC_SMS_SECONDARY_URL")?,
            sms_rate: rate(source, "WEDSYNC_SMS_RATE_PER_SECOND")?,
            sms_secondary_rate: rate(source, "WEDSYNC_SMS_SECONDARY_RATE_PER_SECOND")?,
            sms_from: match source.get("WEDSYNC_SMS_FROM", false)? {
                Some(v) => sms_from(v)?,
                None => d.sms_from,
            },
            bounce_address: match source.get("WEDSYNC_BOUNCE_ADDRESS", false)? {
                Some(v) => Some(bounce_address(v)?),
                None => None,
            },
            breaker_failures: count(
                source,
                "WEDSYNC_BREAKER_FAILURES",
                d.breaker_failures,
                MAX_POOL,
            )?,
            breaker_open: Duration::from_millis(u64::from(count(
                source,
                "WEDSYNC_BREAKER_OPEN_MS",
                d.breaker_open.as_millis() as u32,
                MAX_OPEN_MS,
            )?)),
            chunk_size: count(source, "WEDSYNC_MESSAGE_CHUNK", d.chunk_size, MAX_POOL)?,
            unrecorded_limit: 0,
        })
        .map(|mut m| -> Result<MessageSettings, SettingsError> {
            m.unrecorded_limit = count(
                source,
                "WEDSYNC_UNRECORDED_LIMIT",
                4 * m.smtp_pool_size,
                MAX_POOL,
            )?;
            Ok(m)
        })?
    }
}

/// An SMTP URL; read as a secret, since it may carry a password.
pub(super) fn smtp_url(
    source: &Source<'_>,
    name: &'static str,
) -> Result<Option<Url>, SettingsError> {
    source
        .get(name, true)?
        .map(|v| parse_url(&v, &["smtp", "smtps"], "e.g. smtp://127.0.0.1:2525"))
        .transpose()
}

/// The contents of `WEDSYNC_SMTP_CA_FILE`, read and checked at start-up.
#[derive(Clone, PartialEq, Eq)]
pub struct TrustedCertificates {
    pub path: PathBuf,
    pub pem: Vec<u8>,
}

impl TrustedCertificates {
    fn read(v: Value) -> Result<TrustedCertificates, SettingsError> {
        let path = PathBuf::from(&v.raw);
        let pem = std::fs::read(&path).map_err(|e| {
            v.invalid(
                &format!("cannot be read ({e})"),
                "a readable file of PEM certificates",
            )
        })?;
        let expected = "a file of PEM certificates (-----BEGIN CERTIFICATE-----)";
        if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
            return Err(v.invalid("holds no PEM certificate", expected));
        }
        // The SMTP transports parse it again; a file they would refuse is named here.
        lettre::transport::smtp::client::Certificate::from_pem(&pem)
            .map_err(|e| v.invalid(&format!("is not valid PEM ({e})"), expected))?;
        Ok(TrustedCertificates { path, pem })
    }
}

/// The path, not the bytes.
impl fmt::Debug for TrustedCertificates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TrustedCertificates({})", self.path.display())
    }
}

/// An SMS provider URL; read as a secret, since it may carry the account token.
pub(super) fn sms_url(
    source: &Source<'_>,
    name: &'static str,
) -> Result<Option<Url>, SettingsError> {
    source
        .get(name, true)?
        .map(|v| parse_url(&v, &["http", "https"], "e.g. https://sms.example.com/api"))
        .transpose()
}

fn rate(source: &Source<'_>, name: &'static str) -> Result<Option<f64>, SettingsError> {
    let Some(v) = source.get(name, false)? else {
        return Ok(None);
    };
    match v.raw.parse::<f64>() {
        Ok(r) if r > 0.0 && r <= MAX_RATE => Ok(Some(r)),
        _ => Err(v.invalid(
            "is not a rate",
            &format!("messages per second, more than 0 and at most {MAX_RATE}, e.g. 50"),
        )),
    }
}

/// An integer from 1 to `max`; `default` when unset.
fn count(
    source: &Source<'_>,
    name: &'static str,
    default: u32,
    max: u64,
) -> Result<u32, SettingsError> {
    let Some(v) = source.get(name, false)? else {
        return Ok(default);
    };
    match v.raw.parse::<u64>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n as u32),
        _ => Err(v.invalid(
            "is not a positive integer in range",
            &format!("an integer from 1 to {max}, e.g. {default}"),
        )),
    }
}

/// An email address, as SMTP's `MAIL FROM` takes it.
fn bounce_address(v: Value) -> Result<Address, SettingsError> {
    match v.raw.trim().parse::<Address>() {
        Ok(address) => Ok(address),
        Err(_) => Err(v.invalid(
            "is not an email address",
            "e.g. bounces@mail.wedsync.example",
        )),
    }
}

/// 1 to 11 letters and digits (an alphanumeric sender id) or an E.164 number.
fn sms_from(v: Value) -> Result<String, SettingsError> {
    let raw = v.raw.as_str();
    let alphanumeric = (1..=11).contains(&raw.len())
        && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b' ')
        && raw.bytes().any(|b| b.is_ascii_alphabetic());
    let number = raw.len() > 1
        && raw.len() <= 16
        && raw.starts_with('+')
        && raw[1..].bytes().all(|b| b.is_ascii_digit());
    if alphanumeric || number {
        Ok(v.raw)
    } else {
        Err(v.invalid(
            "is not an SMS sender id",
            "1 to 11 letters, digits and spaces with at least one letter, or an E.164 number",
        ))
    }
}
