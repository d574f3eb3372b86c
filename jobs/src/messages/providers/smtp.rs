//! Email transports: pooled SMTP (`WEDSYNC_SMTP_URL`, `WEDSYNC_SMTP_SECONDARY_URL`, see
//! `smtp_pool`) or, when none is configured, an outbox folder of `.eml` files.

use super::smtp_pool::{PoolError, SmtpPool, Step};
use super::smtp_tls;
use super::{Proceed, SendError};
use crate::messages::email::Email;
use crate::messages::mail_report;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncFileTransport, AsyncTransport, Tokio1Executor};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

/// Connections per SMTP provider and worker process unless configured.
pub const DEFAULT_POOL_SIZE: u32 = 10;

/// Where mail goes; cheap to clone.
#[derive(Clone)]
pub struct EmailTransport(Kind);

#[derive(Clone)]
enum Kind {
    Smtp(Arc<SmtpPool>),
    Outbox {
        dir: PathBuf,
        transport: AsyncFileTransport<Tokio1Executor>,
    },
}

/// Why an SMTP URL was refused; names the setting, never the password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{setting} {problem}")]
pub struct SmtpConfigError {
    setting: String,
    problem: String,
}

impl EmailTransport {
    /// A pool of `pool_size` SMTP connections to `url`, `setting` naming where it came from for
    /// errors: `smtp://[user:password@]host[:port]` (plain, port 25),
    /// `smtp://…?tls=required` (STARTTLS before anything else, port 587) or `smtps://…`
    /// (implicit TLS, port 465). TLS certificates are checked against the platform's roots and
    /// `extra_roots` (PEM, `WEDSYNC_SMTP_CA_FILE`); see `smtp_tls`.
    pub fn smtp(
        setting: &str,
        url: &str,
        pool_size: u32,
        extra_roots: Option<&[u8]>,
    ) -> Result<EmailTransport, SmtpConfigError> {
        let invalid = |problem: &str| SmtpConfigError {
            setting: setting.to_owned(),
            problem: problem.to_owned(),
        };
        let parsed = url::Url::parse(url).map_err(|e| invalid(&format!("is not a URL ({e})")))?;
        if !matches!(parsed.scheme(), "smtp" | "smtps") {
            return Err(invalid("must start with smtp:// or smtps://"));
        }
        let host = parsed
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| invalid("has no host"))?;
        let security = smtp_tls::security(
            parsed.scheme(),
            parsed
                .query_pairs()
                .map(|(k, v)| (k.into_owned(), v.into_owned())),
            host,
            extra_roots,
        )
        .map_err(|e| invalid(&e.to_string()))?;
        let credentials = (!parsed.username().is_empty()).then(|| {
            let user = percent_decode(parsed.username());
            let password = percent_decode(parsed.password().unwrap_or_default());
            Credentials::new(user, password)
        });
        if credentials.is_some() && exposes_credentials(&security, host) {
            // Named so an operator finds it; the URL (with its password) is never logged.
            tracing::warn!(
                setting,
                host,
                "SMTP credentials will cross the network unencrypted: use smtps:// or ?tls=required"
            );
        }
        Ok(EmailTransport(Kind::Smtp(Arc::new(SmtpPool::new(
            host.to_owned(),
            parsed.port().unwrap_or(security.default_port()),
            credentials,
            security,
            pool_size as usize,
        )))))
    }

    /// Write each message as `<uuid>.eml` into `dir` (created on first use).
    pub fn outbox(dir: impl Into<PathBuf>) -> EmailTransport {
        let dir = dir.into();
        EmailTransport(Kind::Outbox {
            transport: AsyncFileTransport::new(&dir),
            dir,
        })
    }

    /// Send `message`, which stays the caller's (to try another provider with).
    pub async fn send(&self, message: &Email) -> Result<(), SendError> {
        self.send_if(message, &|| true).await.map(drop)
    }

    /// Send `message` unless `proceed` says no once a connection is free for it (the outbox:
    /// right before it is written; `Ok(false)`: nothing went out).
    pub async fn send_if(&self, message: &Email, proceed: &dyn Proceed) -> Result<bool, SendError> {
        match &self.0 {
            Kind::Smtp(pool) => pool
                .send(&message.envelope, &message.formatted, proceed)
                .await
                .map_err(|err| match err {
                    PoolError::Smtp { step, error } => classify(step, error),
                    PoolError::Io(reason) => SendError::Unavailable(reason),
                }),
            Kind::Outbox { dir, transport } => {
                if !proceed.proceed().await {
                    return Ok(false);
                }
                tokio::fs::create_dir_all(dir)
                    .await
                    .map_err(|e| SendError::Unavailable(format!("outbox folder: {e}")))?;
                transport
                    .send_raw(&message.envelope, &message.formatted)
                    .await
                    .map(|_| true)
                    .map_err(|e| SendError::Unavailable(format!("outbox: {e}")))
            }
        }
    }
}

/// SMTP replies and transport errors in the classes of [`SendError`], by the step that failed.
/// A 5xx bounces the recipient only when it answers RCPT and says the address is at fault
/// ([`refused_recipient`]): to MAIL it refuses our sender (a set-up error: the provider is
/// unusable, so the send waits or fails over instead of suppressing the whole guest list), to
/// DATA or the content it refuses the message (`Refused`: the delivery fails, nobody is
/// suppressed). 421 (the server is closing) → unavailable; other 4xx → deferred; refused or
/// dropped connections, timeouts → unavailable.
fn classify(step: Step, err: lettre::transport::smtp::Error) -> SendError {
    let code = err.status().map(|c| c.to_string());
    let message = match &code {
        Some(code) => format!("SMTP {code} to {}: {err}", step.command()),
        None => err.to_string(),
    };
    if err.is_permanent() {
        match step {
            Step::Rcpt => refused_recipient(&err, code.as_deref(), message),
            Step::Mail => SendError::Unavailable(message),
            Step::Data | Step::Content => SendError::Refused(message),
        }
    } else if err.is_transient() && code.as_deref() != Some("421") {
        SendError::Deferred {
            reason: message,
            retry_after: None,
        }
    } else {
        SendError::Unavailable(message)
    }
}

/// A 5xx to RCPT, by the enhanced status code that opens its text (RFC 3463) when the server
/// gives one. Servers refuse at RCPT for more than the address: Postfix applies its client,
/// sender and relay checks there (`554 5.7.1 Relay access denied`, a blocklisted IP, `553 5.1.8`
/// a sender it does not own, `550 5.1.0 <…>: Sender address rejected: User unknown`). Bouncing
/// on those would suppress the whole guest list for a set-up error, so they count against the
/// provider (`Unavailable`: the send waits or fails over), as does any refusal in Postfix's
/// words for its sender checks, whatever its code. An address at fault as for a DSN
/// (`mail_report::address_fault`: 5.1.x but 5.1.0, 5.1.7 and 5.1.8; 5.2.1; 5.4.4) bounces; other reasons
/// (a full mailbox, 5.2.2; the unspecific 5.1.0) fail the delivery without suppressing anyone.
/// Without an enhanced code, 550, 551 and 553 are the address's (RFC 5321's "mailbox
/// unavailable", "user not local", "mailbox name not allowed"), the rest not.
fn refused_recipient(
    err: &lettre::transport::smtp::Error,
    code: Option<&str>,
    message: String,
) -> SendError {
    let text = std::error::Error::source(err)
        .map(ToString::to_string)
        .unwrap_or_default();
    if text
        .to_ascii_lowercase()
        .contains("sender address rejected")
    {
        return SendError::Unavailable(message);
    }
    match mail_report::status_code(&text) {
        Some((5, subject, detail)) if mail_report::address_fault(subject, detail) => {
            SendError::Rejected(message)
        }
        Some((5, 7, _) | (5, 1, 7 | 8)) => SendError::Unavailable(message),
        Some(_) => SendError::Refused(message),
        None if matches!(code, Some("550" | "551" | "553")) => SendError::Rejected(message),
        None => SendError::Refused(message),
    }
}

/// Whether a login over this connection would go out in clear text to another machine. A relay
/// on loopback is exempt: nothing leaves the host.
fn exposes_credentials(security: &smtp_tls::Security, host: &str) -> bool {
    let loopback = host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    matches!(security, smtp_tls::Security::Plain) && !loopback
}

/// `%40` → `@` and the like in a URL's user or password. A `&` or `+` there is itself: the
/// `url` crate leaves both as written in the user info.
fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

/// Shows the kind of transport, never the credentials.
impl fmt::Debug for EmailTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Kind::Smtp(_) => f.write_str("EmailTransport::Smtp"),
            Kind::Outbox { dir, .. } => {
                write!(f, "EmailTransport::Outbox({})", dir.display())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn smtp_urls_say_their_security_and_bad_ones_name_the_setting() {
        let smtp = |url| EmailTransport::smtp("WEDSYNC_SMTP_URL", url, 2, None);
        for good in [
            "smtp://127.0.0.1:2525",
            "smtp://user:secret@mail.example.com",
            "smtp://mail.example.com:587?tls=required",
            "smtps://user:secret@mail.example.com",
        ] {
            assert!(smtp(good).is_ok(), "{good}");
        }
        for (bad, says) in [
            ("mail.example.com", "is not a URL"),
            ("smtp://", "has no host"),
            ("https://mail.example.com", "smtp:// or smtps://"),
            (
                "smtp://mail.example.com?tls=opportunistic",
                "`tls=opportunistic`",
            ),
            ("smtps://mail.example.com?tls=required", "always TLS"),
            ("smtp://mail.example.com?pool=3", "unknown parameter `pool`"),
        ] {
            let err = smtp(bad).unwrap_err().to_string();
            assert!(err.starts_with("WEDSYNC_SMTP_URL "), "{bad}: {err}");
            assert!(err.contains(says), "{bad}: {err}");
        }
        let not_pem = EmailTransport::smtp("WEDSYNC_SMTP_URL", "smtps://x", 2, Some(b"hello"));
        assert!(
            not_pem
                .unwrap_err()
                .to_string()
                .contains("no PEM certificate")
        );
        let err = smtp("https://user:secret@x").unwrap_err().to_string();
        assert!(!err.contains("secret"), "{err}");
        let debug = format!("{:?}", smtp("smtps://user:secret@x").unwrap());
        assert!(!debug.contains("secret"), "{debug}");
    }

    #[test]
    fn a_password_keeps_every_character_the_url_gives_it() {
        let parsed = url::Url::parse("smtp://us%40er:p&ss+w%2Frd%40;x@mail.example.com").unwrap();
        assert_eq!(percent_decode(parsed.username()), "us@er");
        assert_eq!(percent_decode(parsed.password().unwrap()), "p&ss+w/rd@;x");
    }

    #[test]
    fn only_a_plain_connection_to_another_host_exposes_a_login() {
        let security = |scheme: &str, query: &[(&str, &str)], host: &str| {
            let pairs = query.iter().map(|(k, v)| (k.to_string(), v.to_string()));
            smtp_tls::security(scheme, pairs, host, None).unwrap()
        };
        let plain = security("smtp", &[], "mail.example.com");
        assert!(exposes_credentials(&plain, "mail.example.com"));
        assert!(exposes_credentials(&plain, "10.0.0.7"));
        for local in ["localhost", "127.0.0.1", "[::1]"] {
            assert!(!exposes_credentials(&plain, local), "{local}");
        }
        let starttls = security("smtp", &[("tls", "required")], "mail.example.com");
        assert!(!exposes_credentials(&starttls, "mail.example.com"));
        let implicit = security("smtps", &[], "mail.example.com");
        assert!(!exposes_credentials(&implicit, "mail.example.com"));
    }

    #[tokio::test]
    async fn without_smtp_messages_land_in_the_outbox_folder() {
        let dir = std::env::temp_dir().join(format!("wedsync-outbox-{}", uuid::Uuid::new_v4()));
        let message = lettre::Message::builder()
            .from("Ann <ann@example.com>".parse().unwrap())
            .to("guest@example.com".parse().unwrap())
            .subject("Save the date")
            .body("Dear guest".to_owned())
            .unwrap();
        EmailTransport::outbox(&dir)
            .send(&Email::from(message))
            .await
            .unwrap();
        let files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].extension().unwrap(), "eml");
        let eml = std::fs::read_to_string(&files[0]).unwrap();
        assert!(eml.contains("Subject: Save the date"), "{eml}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
