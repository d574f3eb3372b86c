//! The email transport, built once per process and shared through `AppContext`: pooled SMTP
//! (`WEDSYNC_SMTP_URL`) or, when none is configured, an outbox folder of `.eml` files.
//!
//! Errors are classified for the delivery job: a permanent SMTP reply (5xx) on a recipient is
//! [`SendError::Permanent`] (the delivery bounces); everything else — 4xx replies, refused or
//! dropped connections, timeouts, a full disk under the outbox — is [`SendError::Transient`]
//! and retried later.

use lettre::transport::smtp::PoolConfig;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// How long one SMTP command may wait for the server.
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

/// Where mail goes.
#[derive(Clone)]
pub enum Mailer {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Outbox {
        dir: PathBuf,
        transport: AsyncFileTransport<Tokio1Executor>,
    },
}

/// Why `WEDSYNC_SMTP_URL` was refused (the message never contains the password).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MailerConfigError(String);

/// A failed send, classified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("permanent failure: {0}")]
    Permanent(String),
    #[error("temporary failure: {0}")]
    Transient(String),
}

impl Mailer {
    /// A pool of SMTP connections to `url`: `smtp://[user:password@]host[:port]` (port 25 by
    /// default). Plain SMTP only in this version: TLS (`smtps://`, STARTTLS) is not built in.
    /// Call it inside a Tokio runtime: the pool starts its idle-connection reaper task.
    pub fn smtp(url: &str) -> Result<Mailer, MailerConfigError> {
        let invalid = |why: &str| MailerConfigError(format!("WEDSYNC_SMTP_URL {why}"));
        let parsed = url::Url::parse(url).map_err(|e| invalid(&format!("is not a URL ({e})")))?;
        if parsed.scheme() != "smtp" {
            return Err(invalid(
                "must start with smtp:// (TLS transports are not supported yet)",
            ));
        }
        let host = parsed
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| invalid("has no host"))?;
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(parsed.port().unwrap_or(25))
            .timeout(Some(SMTP_TIMEOUT))
            .pool_config(PoolConfig::new().max_size(10));
        if !parsed.username().is_empty() {
            let password = parsed.password().unwrap_or_default();
            builder = builder.credentials(Credentials::new(
                parsed.username().to_owned(),
                password.to_owned(),
            ));
        }
        Ok(Mailer::Smtp(builder.build()))
    }

    /// Write each message as `<uuid>.eml` into `dir` (created on first use).
    pub fn outbox(dir: impl Into<PathBuf>) -> Mailer {
        let dir = dir.into();
        Mailer::Outbox {
            transport: AsyncFileTransport::new(&dir),
            dir,
        }
    }

    /// The default when nothing is configured: `<temp dir>/wedsync-outbox`.
    pub fn default_outbox() -> Mailer {
        Mailer::outbox(std::env::temp_dir().join("wedsync-outbox"))
    }

    pub async fn send(&self, message: Message) -> Result<(), SendError> {
        match self {
            Mailer::Smtp(transport) => transport.send(message).await.map(|_| ()).map_err(classify),
            Mailer::Outbox { dir, transport } => {
                tokio::fs::create_dir_all(dir)
                    .await
                    .map_err(|e| SendError::Transient(format!("outbox folder: {e}")))?;
                transport
                    .send(message)
                    .await
                    .map(|_| ())
                    .map_err(|e| SendError::Transient(format!("outbox: {e}")))
            }
        }
    }
}

fn classify(err: lettre::transport::smtp::Error) -> SendError {
    let code = err.status().map(|c| c.to_string());
    let message = match &code {
        Some(code) => format!("SMTP {code}: {err}"),
        None => err.to_string(),
    };
    if err.is_permanent() {
        SendError::Permanent(message)
    } else {
        SendError::Transient(message)
    }
}

/// Shows the kind of transport, never the credentials.
impl fmt::Debug for Mailer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mailer::Smtp(_) => f.write_str("Mailer::Smtp"),
            Mailer::Outbox { dir, .. } => write!(f, "Mailer::Outbox({})", dir.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_plain_smtp_urls_with_a_host_are_accepted() {
        assert!(Mailer::smtp("smtp://127.0.0.1:2525").is_ok());
        assert!(Mailer::smtp("smtp://user:secret@mail.example.com").is_ok());
        for bad in ["smtps://mail.example.com", "mail.example.com", "smtp://"] {
            let err = Mailer::smtp(bad).unwrap_err().to_string();
            assert!(err.contains("WEDSYNC_SMTP_URL"), "{bad}: {err}");
        }
        let err = Mailer::smtp("https://user:secret@x")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("secret"), "{err}");
    }

    #[tokio::test]
    async fn without_smtp_messages_land_in_the_outbox_folder() {
        let dir = std::env::temp_dir().join(format!("wedsync-outbox-{}", uuid::Uuid::new_v4()));
        let message = Message::builder()
            .from("Ann <ann@example.com>".parse().unwrap())
            .to("guest@example.com".parse().unwrap())
            .subject("Save the date")
            .body("Dear guest".to_owned())
            .unwrap();
        Mailer::outbox(&dir).send(message).await.unwrap();
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
