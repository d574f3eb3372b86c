//! A pool of SMTP connections, ours rather than lettre's, for three reasons measured in
//! `docs/benchmarks.md`:
//!
//! - **TCP_NODELAY.** lettre writes a message's body and its closing `.` in two writes; without
//!   `TCP_NODELAY` Nagle's algorithm holds the second until the server acknowledges the first,
//!   and servers delay that acknowledgement (40 ms on Linux): about 40 ms per message, 250
//!   messages a second for a pool of 10 whatever the server. lettre's pool opens its sockets
//!   itself and offers no way to set the option; here we open them and hand them to lettre's
//!   connection (`AsyncSmtpConnection::connect_with_transport`).
//! - **No NOOP per message.** lettre's pool checks every connection with a NOOP round trip
//!   before reusing it; here a kept connection is first looked at without one — a peek at its
//!   socket says whether the server closed it or wrote to it since its last reply — and one
//!   idle for less than [`FRESH`] with nothing there is reused as it is. One that still turns out
//!   to be closed before any of the message went is replaced once (below).
//! - **Fewer round trips per message.** A transaction is pipelined when the server offers it,
//!   whole in one write with the content when it also offers CHUNKING (`smtp_transaction`).
//!
//! At most `size` messages are in flight per pool (a semaphore); idle connections are kept up
//! to `size`, and closed after [`MAX_IDLE`].

use super::Proceed;
use super::smtp_tls::{self, Security};
pub(super) use super::smtp_transaction::Step;
use super::smtp_transaction::{Connection, Peer, StepFailed, transact};
use crate::sync::lock;
use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::AsyncSmtpConnection;
use lettre::transport::smtp::commands::Rset;
use lettre::transport::smtp::extension::ClientId;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

/// Reused without a NOOP when idle for less than this.
const FRESH: Duration = Duration::from_secs(2);
/// Dropped when idle for longer (servers close idle sessions after a minute or more).
const MAX_IDLE: Duration = Duration::from_secs(30);
/// Connecting, greeting and authenticating.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// One whole transaction (MAIL, RCPT, DATA, the message).
const SEND_TIMEOUT: Duration = Duration::from_secs(60);
/// A NOOP before reusing a connection, or a RSET after a refusal. lettre sets no read timeout on
/// a stream handed to it, so a server that hangs, or a firewall that silently dropped an idle
/// flow, would otherwise hold the message (and its permits) until TCP gives up.
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) struct SmtpPool {
    host: String,
    port: u16,
    credentials: Option<Credentials>,
    security: Security,
    hello: ClientId,
    size: usize,
    permits: Semaphore,
    idle: Mutex<Vec<(Connection, Instant)>>,
}

/// Why a send failed, before classification.
pub(super) enum PoolError {
    /// A command of the transaction failed, or its answer did not come.
    Smtp {
        step: Step,
        error: lettre::transport::smtp::Error,
    },
    Io(String),
}

/// A failed transaction.
struct Failure {
    error: PoolError,
    /// Failed before the message's content went out: the server cannot have taken it.
    before_content: bool,
}

impl From<StepFailed> for Failure {
    fn from(failed: StepFailed) -> Self {
        Failure {
            before_content: failed.before_content(),
            error: PoolError::Smtp {
                step: failed.step,
                error: failed.error,
            },
        }
    }
}

impl SmtpPool {
    pub fn new(
        host: String,
        port: u16,
        credentials: Option<Credentials>,
        security: Security,
        size: usize,
    ) -> Self {
        SmtpPool {
            host,
            port,
            credentials,
            security,
            hello: ClientId::default(),
            size: size.max(1),
            permits: Semaphore::new(size.max(1)),
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Send `message` once a connection is free, unless `proceed` then says no (`Ok(false)`:
    /// nothing went out). Against a slow server messages queue here for a connection, and what
    /// was true when one started waiting (the send active) may no longer be.
    pub async fn send(
        &self,
        envelope: &Envelope,
        message: &[u8],
        proceed: &dyn Proceed,
    ) -> Result<bool, PoolError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| PoolError::Io("the SMTP pool was closed".into()))?;
        let Some((mut conn, reused)) = self.ready_connection(proceed).await? else {
            return Ok(false);
        };
        match self.transact(&mut conn, envelope, message).await {
            Ok(()) => {
                self.checkin(conn);
                Ok(true)
            }
            // The server answered with a refusal: the session is still good, but its transaction
            // is open (a sender given, perhaps recipients) and a server answers the next MAIL
            // with 503. RSET ends it; a connection that cannot be reset is dropped.
            Err(Failure {
                error: PoolError::Smtp { step, error },
                ..
            }) if error.status().is_some() => {
                let reset = tokio::time::timeout(CHECK_TIMEOUT, conn.smtp.command(Rset)).await;
                if matches!(reset, Ok(Ok(_))) {
                    self.checkin(conn);
                }
                Err(PoolError::Smtp { step, error })
            }
            // A kept connection the server had closed meanwhile fails at its first command. Only
            // a network failure before the message's content is sent is retried, on a new
            // connection: up to then the server cannot have taken the message, and after it
            // (no answer to the final `.`) it may have, so a retry could deliver it twice.
            Err(Failure {
                error: PoolError::Smtp { error, .. },
                before_content: true,
            }) if reused && is_unanswered(&error) => {
                drop(conn);
                let mut conn = self.connect().await?;
                if !proceed.still() {
                    self.checkin(conn);
                    let Some((again, _)) = self.ready_connection(proceed).await? else {
                        return Ok(false);
                    };
                    conn = again;
                }
                self.transact(&mut conn, envelope, message)
                    .await
                    .map_err(|f| f.error)?;
                self.checkin(conn);
                Ok(true)
            }
            Err(failure) => Err(failure.error),
        }
    }

    /// A connection for a message `proceed` lets go (`None`: it said no). Its last look
    /// ([`Proceed::still`]: the worker's lease) is taken again once the connection is ready, for
    /// a new one takes up to [`CONNECT_TIMEOUT`] (connected, greeted, logged in): nothing but
    /// the transaction may come between that look and the message.
    async fn ready_connection(
        &self,
        proceed: &dyn Proceed,
    ) -> Result<Option<(Connection, bool)>, PoolError> {
        loop {
            if !proceed.proceed().await {
                return Ok(None);
            }
            let (conn, reused) = self.checkout().await?;
            if proceed.still() {
                return Ok(Some((conn, reused)));
            }
            self.checkin(conn);
        }
    }

    /// One mail transaction (`smtp_transaction`), within [`SEND_TIMEOUT`].
    async fn transact(
        &self,
        conn: &mut Connection,
        envelope: &Envelope,
        message: &[u8],
    ) -> Result<(), Failure> {
        match tokio::time::timeout(SEND_TIMEOUT, transact(conn, envelope, message)).await {
            Ok(result) => result.map_err(Failure::from),
            Err(_) => Err(Failure {
                error: PoolError::Io(format!(
                    "no answer from the SMTP server within {SEND_TIMEOUT:?}"
                )),
                before_content: false,
            }),
        }
    }

    /// An idle connection (NOOP-checked when not fresh), or a new one; and whether it was kept.
    async fn checkout(&self) -> Result<(Connection, bool), PoolError> {
        loop {
            let idle = lock(&self.idle).pop();
            let Some((mut conn, since)) = idle else { break };
            let idle_for = since.elapsed();
            if idle_for >= MAX_IDLE {
                continue;
            }
            match conn.peer() {
                Peer::Closed => continue,
                Peer::Quiet if idle_for < FRESH => return Ok((conn, true)),
                Peer::Quiet | Peer::Unsure => {
                    let answered = tokio::time::timeout(CHECK_TIMEOUT, conn.smtp.test_connected());
                    if answered.await.unwrap_or(false) {
                        return Ok((conn, true));
                    }
                }
            }
        }
        Ok((self.connect().await?, false))
    }

    fn checkin(&self, conn: Connection) {
        if conn.smtp.has_broken() {
            return;
        }
        let mut idle = lock(&self.idle);
        if idle.len() < self.size {
            idle.push((conn, Instant::now()));
        }
    }

    async fn connect(&self) -> Result<Connection, PoolError> {
        let connect = async {
            let stream = TcpStream::connect((self.host.as_str(), self.port))
                .await
                .map_err(|e| PoolError::Io(format!("connecting to the SMTP server: {e}")))?;
            stream
                .set_nodelay(true)
                .map_err(|e| PoolError::Io(format!("setting TCP_NODELAY: {e}")))?;
            let (stream, probe) = with_probe(stream)
                .map_err(|e| PoolError::Io(format!("opening the SMTP socket: {e}")))?;
            // Whatever fails before a message is the provider's trouble (a refused greeting, a
            // certificate not trusted, bad credentials), never a recipient's: an I/O error, so
            // nobody bounces for it.
            let stream = match &self.security {
                Security::Implicit(tls) => smtp_tls::encrypt(stream, tls)
                    .await
                    .map_err(|e| PoolError::Io(format!("TLS with the SMTP server: {e}")))?,
                Security::Plain | Security::StartTls(_) => Box::new(stream),
            };
            let mut conn = AsyncSmtpConnection::connect_with_transport(stream, &self.hello)
                .await
                .map_err(|e| PoolError::Io(format!("greeting the SMTP server: {e}")))?;
            if let Security::StartTls(tls) = &self.security {
                conn.starttls(tls.clone(), &self.hello)
                    .await
                    .map_err(|e| PoolError::Io(format!("STARTTLS with the SMTP server: {e}")))?;
            }
            // What the server offers is asked before the login: an EHLO after AUTH is refused
            // by some servers (503) and makes others forget the login (530 to every MAIL).
            let mut conn = Connection::new(conn, probe, &self.hello)
                .await
                .map_err(|e| {
                    PoolError::Io(format!("asking the SMTP server what it offers: {e}"))
                })?;
            if let Some(credentials) = &self.credentials {
                conn.smtp
                    .auth(&[Mechanism::Plain, Mechanism::Login], credentials)
                    .await
                    .map_err(|e| PoolError::Io(format!("SMTP authentication: {e}")))?;
            }
            Ok(conn)
        };
        tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .unwrap_or_else(|_| {
                Err(PoolError::Io(format!(
                    "the SMTP server did not greet within {CONNECT_TIMEOUT:?}"
                )))
            })
    }
}

/// The socket and a second handle on it for `Connection::peer` (a duplicated descriptor: it
/// shares the socket's non-blocking mode, and closes with the connection that holds both).
fn with_probe(stream: TcpStream) -> std::io::Result<(TcpStream, std::net::TcpStream)> {
    let stream = stream.into_std()?;
    let probe = stream.try_clone()?;
    Ok((TcpStream::from_std(stream)?, probe))
}

/// No answer from the server rather than an answer: an I/O error, or a connection closed
/// before a whole reply (lettre calls that a response error, "incomplete response").
fn is_unanswered(err: &lettre::transport::smtp::Error) -> bool {
    err.status().is_none() && !err.is_client()
}
