//! Email transports: pooled SMTP (`WEDSYNC_SMTP_URL`, `WEDSYNC_SMTP_SECONDARY_URL`) or, when
//! none is configured, an outbox folder of `.eml` files.
//!
//! lettre's pool keeps at most `pool_size` idle connections but opens a new one whenever all are
//! busy, and closes it again afterwards: more concurrent sends than the pool holds would mean a
//! TCP and EHLO handshake per message. A semaphore of `pool_size` permits in front of it keeps
//! every send on a pooled connection.

use super::SendError;
use lettre::transport::smtp::PoolConfig;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// How long one SMTP command may wait for the server.
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections per SMTP provider and worker process unless configured.
pub const DEFAULT_POOL_SIZE: u32 = 10;

/// Where mail goes; cheap to clone.
#[derive(Clone)]
pub enum EmailTransport {
    Smtp {
        transport: AsyncSmtpTransport<Tokio1Executor>,
        connections: Arc<Semaphore>,
    },
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
    /// A pool of `pool_size` SMTP connections to `url`: `smtp://[user:password@]host[:port]`
    /// (port 25 by default), `setting` naming where it came from for errors. Plain SMTP only in
    /// this version: TLS (`smtps://`, STARTTLS) is not built in. Call it inside a Tokio runtime:
    /// the pool starts its idle-connection reaper task.
    pub fn smtp(setting: &str, url: &str, pool_size: u32) -> Result<EmailTransport, SmtpConfigError> {
        let invalid = |problem: &str| SmtpConfigError {
            setting: setting.to_owned(),
            problem: problem.to_owned(),
        };
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
        let pool_size = pool_size.max(1);
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(parsed.port().unwrap_or(25))
            .timeout(Some(SMTP_TIMEOUT))
            .pool_config(PoolConfig::new().max_size(pool_size));
        if !parsed.username().is_empty() {
            let password = parsed.password().unwrap_or_default();
            builder = builder.credentials(Credentials::new(
                parsed.username().to_owned(),
                password.to_owned(),
            ));
        }
        Ok(EmailTransport::Smtp {
            transport: builder.build(),
            connections: Arc::new(Semaphore::new(pool_size as usize)),
        })
    }

    /// Write each message as `<uuid>.eml` into `dir` (created on first use).
    pub fn outbox(dir: impl Into<PathBuf>) -> EmailTransport {
        let dir = dir.into();
        EmailTransport::Outbox {
            transport: AsyncFileTransport::new(&dir),
            dir,
        }
    }

    pub async fn send(&self, message: Message) -> Result<(), SendError> {
        match self {
            EmailTransport::Smtp {
                transport,
                connections,
            } => {
                let _connection = connections
                    .acquire()
                    .await
                    .map_err(|_| SendError::Unavailable("the SMTP pool was closed".into()))?;
                transport.send(message).await.map(|_| ()).map_err(classify)
            }
            EmailTransport::Outbox { dir, transport } => {
                tokio::fs::create_dir_all(dir)
                    .await
                    .map_err(|e| SendError::Unavailable(format!("outbox folder: {e}")))?;
                transport
                    .send(message)
                    .await
                    .map(|_| ())
                    .map_err(|e| SendError::Unavailable(format!("outbox: {e}")))
            }
        }
    }
}

/// SMTP replies and transport errors in the classes of [`SendError`]: 5xx → rejected (the
/// recipient bounces); 421 (service not available, the server is closing) → the provider is
/// unavailable; other 4xx → deferred; refused or dropped connections, timeouts → unavailable.
fn classify(err: lettre::transport::smtp::Error) -> SendError {
    let code = err.status().map(|c| c.to_string());
    let message = match &code {
        Some(code) => format!("SMTP {code}: {err}"),
        None => err.to_string(),
    };
    if err.is_permanent() {
        SendError::Rejected(message)
    } else if err.is_transient() && code.as_deref() != Some("421") {
        SendError::Deferred {
            reason: message,
            retry_after: None,
        }
    } else {
        SendError::Unavailable(message)
    }
}

/// Shows the kind of transport, never the credentials.
impl fmt::Debug for EmailTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EmailTransport::Smtp { .. } => f.write_str("EmailTransport::Smtp"),
            EmailTransport::Outbox { dir, .. } => {
                write!(f, "EmailTransport::Outbox({})", dir.display())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_plain_smtp_urls_with_a_host_are_accepted() {
        let smtp = |url| EmailTransport::smtp("WEDSYNC_SMTP_URL", url, 2);
        assert!(smtp("smtp://127.0.0.1:2525").is_ok());
        assert!(smtp("smtp://user:secret@mail.example.com").is_ok());
        for bad in ["smtps://mail.example.com", "mail.example.com", "smtp://"] {
            let err = smtp(bad).unwrap_err().to_string();
            assert!(err.starts_with("WEDSYNC_SMTP_URL "), "{bad}: {err}");
        }
        let err = smtp("https://user:secret@x").unwrap_err().to_string();
        assert!(!err.contains("secret"), "{err}");
        let debug = format!("{:?}", smtp("smtp://user:secret@x").unwrap());
        assert!(!debug.contains("secret"), "{debug}");
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
        EmailTransport::outbox(&dir).send(message).await.unwrap();
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
