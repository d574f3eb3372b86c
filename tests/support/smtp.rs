//! A real SMTP server on loopback for tests: speaks enough SMTP for lettre (EHLO/HELO, MAIL,
//! RCPT, DATA, BDAT, RSET, NOOP, QUIT, and STARTTLS or implicit TLS when started so), offers
//! PIPELINING and CHUNKING unless told not to and notes which transactions came pipelined
//! (and which whole, content included, in one write), records every
//! accepted message, and can be told to answer a recipient with a given reply code (a number of
//! times or always) or to drop the connection. Its TLS certificate is
//! `tests/fixtures/smtp_tls/server.pem`, signed by `ca.pem` there.

use super::rules::{Rule, take_action};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A message the server accepted.
#[derive(Debug, Clone)]
pub struct Received {
    pub from: String,
    pub to: Vec<String>,
    /// Headers and body as sent (dot-unstuffed after DATA, as they came in BDAT chunks).
    pub data: String,
    /// When the server answered `250` to the message.
    pub accepted_at: std::time::Instant,
    /// It came over TLS.
    pub encrypted: bool,
}

impl Received {
    /// The value of header `name` (first occurrence, unfolded).
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next().unwrap_or_default();
        let mut value: Option<String> = None;
        for line in head.split("\r\n") {
            if let Some(v) = value.as_mut() {
                if line.starts_with([' ', '\t']) {
                    // Unfolding removes only the line break.
                    v.push_str(line);
                    continue;
                }
                break;
            }
            if let Some((n, v)) = line.split_once(':')
                && n.eq_ignore_ascii_case(name)
            {
                value = Some(v.trim().to_owned());
            }
        }
        value
    }
}

/// What the server does when a recipient is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Answer with this code (421 also closes the connection, as a server going away does).
    Reply(u16),
    /// Answer with this code and the text that follows it, which a real server opens with an
    /// enhanced status code (RFC 3463): `ReplyWith(554, "5.7.1 Relay access denied")`.
    ReplyWith(u16, &'static str),
    /// Close the connection without answering.
    Drop,
    /// Accept the recipient and take the message, then close the connection instead of
    /// answering the final `.`: the server has the message, the client cannot know it.
    DropAfterContent,
    /// Accept the recipient and the message, then close the connection (an idle session the
    /// server ends): the client finds out at its next command.
    CloseAfterMessage,
    /// Accept the recipient, take the content, then refuse the message with this code (a size
    /// or policy refusal); nothing is recorded as received.
    RefuseContent(u16),
}

#[derive(Default)]
struct State {
    messages: Vec<Received>,
    rules: Vec<Rule<Action>>,
    /// Codes to answer MAIL with, by sender.
    sender_rules: Vec<Rule<u16>>,
    /// Senders whose MAIL is met by closing the connection without an answer.
    mail_drops: Vec<Rule<()>>,
    /// Every MAIL seen, by sender, accepted or not.
    mail_attempts: Vec<String>,
    /// How long the server takes to answer a message's final `.` (a slow server).
    reply_delay: std::time::Duration,
    /// Every RCPT seen, accepted or not.
    rcpt_attempts: VecDeque<String>,
    /// PIPELINING is left out of the EHLO reply.
    no_pipelining: bool,
    /// CHUNKING is left out of the EHLO reply.
    no_chunking: bool,
    /// MAIL commands that arrived with the next command already behind them (pipelined).
    pipelined_mails: usize,
    /// MAIL commands that arrived with a BDAT behind them in the same read: the whole
    /// transaction in one write.
    whole_transactions: usize,
    /// Sessions that ended, their connection closed.
    ended_sessions: usize,
    /// RSET commands still to be met with silence, the connection held open (a hung server).
    hung_rsets: usize,
    /// The user and password AUTH PLAIN must give before MAIL (none: no login asked).
    login: Option<(String, String)>,
    /// EHLO commands refused because they came after a login.
    ehlos_after_login: usize,
    /// How long a new connection waits for its greeting (a slow or distant server).
    greeting_delay: std::time::Duration,
}

/// How the server offers TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encryption {
    None,
    /// Offers STARTTLS in its EHLO reply.
    StartTls,
    /// Encrypted from the first byte (smtps).
    Implicit,
}

pub struct SmtpServer {
    pub addr: SocketAddr,
    tls: Encryption,
    state: Arc<Mutex<State>>,
    task: JoinHandle<()>,
}

impl SmtpServer {
    pub async fn start() -> SmtpServer {
        SmtpServer::start_with(Encryption::None).await
    }

    pub async fn start_with(tls: Encryption) -> SmtpServer {
        SmtpServer::listen("127.0.0.1:0".parse().unwrap(), tls).await
    }

    /// A server on `addr`, e.g. a port that refused connections until now (a provider that
    /// comes back).
    pub async fn start_on(addr: SocketAddr) -> SmtpServer {
        SmtpServer::listen(addr, Encryption::None).await
    }

    async fn listen(addr: SocketAddr, tls: Encryption) -> SmtpServer {
        let listener = TcpListener::bind(addr).await.expect("bind SMTP");
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        let acceptor = (tls != Encryption::None).then(acceptor);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                // Replies go at once, as a mail server's do: with Nagle's algorithm a reply
                // written while the previous one is unacknowledged waits for the client's
                // delayed ACK, ~40 ms a message on one connection.
                let _ = stream.set_nodelay(true);
                let state = shared.clone();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    match (tls, acceptor) {
                        (Encryption::Implicit, Some(acceptor)) => {
                            if let Ok(stream) = acceptor.accept(stream).await {
                                session(Box::new(stream), state.clone(), None, true, true).await;
                            }
                        }
                        (_, acceptor) => {
                            session(Box::new(stream), state.clone(), acceptor, false, true).await
                        }
                    }
                    // The session's stream is dropped by now: its connection is closed.
                    state.lock().unwrap().ended_sessions += 1;
                });
            }
        });
        SmtpServer {
            addr,
            tls,
            state,
            task,
        }
    }

    /// The URL a client reaches it at: `smtp://127.0.0.1:<port>`, with `?tls=required` when it
    /// offers STARTTLS, `smtps://…` when it speaks TLS from the start.
    pub fn url(&self) -> String {
        match self.tls {
            Encryption::None => format!("smtp://{}", self.addr),
            Encryption::StartTls => format!("smtp://{}?tls=required", self.addr),
            Encryption::Implicit => format!("smtps://{}", self.addr),
        }
    }

    /// Answer RCPT for `address` with `action`, `times` times (`None`: always).
    pub fn on_rcpt(&self, address: &str, action: Action, times: Option<usize>) {
        self.state.lock().unwrap().rules.push(Rule {
            recipient: address.to_lowercase(),
            action,
            remaining: times,
        });
    }

    /// Answer MAIL from `sender` with `code`, `times` times (`None`: always).
    pub fn on_mail(&self, sender: &str, code: u16, times: Option<usize>) {
        self.state.lock().unwrap().sender_rules.push(Rule {
            recipient: sender.to_lowercase(),
            action: code,
            remaining: times,
        });
    }

    /// Close the connection without answering MAIL from `sender`, `times` times (`None`:
    /// always): a server going away between two messages of a kept connection.
    pub fn drop_at_mail(&self, sender: &str, times: Option<usize>) {
        self.state.lock().unwrap().mail_drops.push(Rule {
            recipient: sender.to_lowercase(),
            action: (),
            remaining: times,
        });
    }

    /// Take `delay` to answer each message's final `.`, as a busy server does.
    pub fn slow_down(&self, delay: std::time::Duration) {
        self.state.lock().unwrap().reply_delay = delay;
    }

    /// Answer the next `times` RSET commands with nothing, holding the connection open, as a
    /// hung server does.
    pub fn hang_on_rset(&self, times: usize) {
        self.state.lock().unwrap().hung_rsets = times;
    }

    /// Require AUTH PLAIN with `user` and `password` before MAIL (530 without it), and refuse an
    /// EHLO after the login with 503, as poste.io does.
    pub fn require_login(&self, user: &str, password: &str) {
        self.state.lock().unwrap().login = Some((user.into(), password.into()));
    }

    /// Greet new connections only after `delay`.
    pub fn greet_after(&self, delay: std::time::Duration) {
        self.state.lock().unwrap().greeting_delay = delay;
    }

    /// How many EHLO commands came after a login (and were refused).
    pub fn ehlos_after_login(&self) -> usize {
        self.state.lock().unwrap().ehlos_after_login
    }

    /// Stop offering PIPELINING (to connections opened from now on), as some servers never do.
    pub fn without_pipelining(&self) {
        self.state.lock().unwrap().no_pipelining = true;
    }

    /// Stop offering CHUNKING (to connections opened from now on): messages come after DATA.
    pub fn without_chunking(&self) {
        self.state.lock().unwrap().no_chunking = true;
    }

    /// How many MAIL commands came in one write with what followed them (RCPT, DATA).
    pub fn pipelined_mail_count(&self) -> usize {
        self.state.lock().unwrap().pipelined_mails
    }

    /// How many transactions came whole (MAIL to BDAT, with the content) in one write.
    pub fn whole_transaction_count(&self) -> usize {
        self.state.lock().unwrap().whole_transactions
    }

    /// How many sessions have ended with their connection closed.
    pub fn ended_session_count(&self) -> usize {
        self.state.lock().unwrap().ended_sessions
    }

    /// How many times MAIL was given (accepted or not).
    pub fn mail_count(&self) -> usize {
        self.state.lock().unwrap().mail_attempts.len()
    }

    /// The first recipient of each message received, in order.
    pub fn first_recipients(&self) -> Vec<String> {
        self.messages()
            .into_iter()
            .map(|m| m.to[0].clone())
            .collect()
    }

    pub fn messages(&self) -> Vec<Received> {
        self.state.lock().unwrap().messages.clone()
    }

    /// How many messages were accepted so far.
    pub fn count(&self) -> usize {
        self.state.lock().unwrap().messages.len()
    }

    /// How many times `address` was given in RCPT (accepted or not).
    pub fn rcpt_count(&self, address: &str) -> usize {
        let address = address.to_lowercase();
        let state = self.state.lock().unwrap();
        state
            .rcpt_attempts
            .iter()
            .filter(|a| **a == address)
            .count()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The rule's action for `address`, using one of its remaining times.
fn action_for(state: &Mutex<State>, address: &str) -> Option<Action> {
    let mut state = state.lock().unwrap();
    state.rcpt_attempts.push_back(address.to_owned());
    take_action(&mut state.rules, address)
}

/// A multi-line 250 reply, one keyword per line (`250-a`, …, `250 z`).
fn ehlo_reply(lines: &[&str]) -> String {
    let last = lines.len() - 1;
    lines
        .iter()
        .enumerate()
        .map(|(i, line)| format!("250{}{line}\r\n", if i == last { ' ' } else { '-' }))
        .collect()
}

fn path_address(arg: &str) -> String {
    let start = arg.find('<').map_or(0, |i| i + 1);
    let end = arg[start..].find('>').map_or(arg.len(), |i| start + i);
    arg[start..end].trim().to_lowercase()
}

/// The file of the test CA that signed the server's certificate (for `WEDSYNC_SMTP_CA_FILE`).
pub fn ca_file() -> PathBuf {
    fixtures().join("ca.pem")
}

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/smtp_tls")
}

fn acceptor() -> TlsAcceptor {
    let chain = CertificateDer::pem_file_iter(fixtures().join("server.pem"))
        .expect("server.pem")
        .collect::<Result<Vec<_>, _>>()
        .expect("server.pem");
    let key = PrivateKeyDer::from_pem_file(fixtures().join("server.key")).expect("server.key");
    let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
    let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("the test certificate");
    TlsAcceptor::from(Arc::new(config))
}

/// A connection, plain or encrypted.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<S: AsyncRead + AsyncWrite + Unpin + Send> Stream for S {}

/// One SMTP session over `stream`; `starttls` offers STARTTLS (then runs on as a new session
/// over TLS, without a second greeting); `encrypted` says the stream already is.
fn session(
    stream: Box<dyn Stream>,
    state: Arc<Mutex<State>>,
    starttls: Option<TlsAcceptor>,
    encrypted: bool,
    greet: bool,
) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(async move {
        let (read, mut write) = tokio::io::split(stream);
        let mut lines = BufReader::new(read);
        let greeting_delay = state.lock().unwrap().greeting_delay;
        if greet {
            // The server's own pace, not a wait for a condition.
            tokio::time::sleep(greeting_delay).await;
        }
        if greet
            && write
                .write_all(b"220 test-smtp ESMTP ready\r\n")
                .await
                .is_err()
        {
            return;
        }
        let Some(acceptor) = converse(&mut lines, &mut write, &state, starttls, encrypted).await
        else {
            return;
        };
        let stream = lines.into_inner().unsplit(write);
        if let Ok(stream) = acceptor.accept(stream).await {
            session(Box::new(stream), state, None, true, false).await;
        }
    })
}

/// Commands until the session ends (`None`) or the client starts TLS (the acceptor to use).
async fn converse<R, W>(
    lines: &mut BufReader<R>,
    write: &mut W,
    state: &Mutex<State>,
    starttls: Option<TlsAcceptor>,
    encrypted: bool,
) -> Option<TlsAcceptor>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut from = String::new();
    let mut to: Vec<String> = Vec::new();
    let mut after_message: Option<Action> = None;
    let mut in_transaction = false;
    let mut chunks: Vec<u8> = Vec::new();
    let mut line = String::new();
    let mut logged_in = false;
    loop {
        line.clear();
        match lines.read_line(&mut line).await {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
        let command = line.trim_end();
        let upper = command.to_ascii_uppercase();
        let login = state.lock().unwrap().login.clone();
        let reply: String = if upper.starts_with("EHLO") && logged_in {
            state.lock().unwrap().ehlos_after_login += 1;
            "503 5.5.1 already authenticated\r\n".into()
        } else if upper.starts_with("EHLO") {
            let (pipelining, chunking) = {
                let state = state.lock().unwrap();
                (!state.no_pipelining, !state.no_chunking)
            };
            let mut keywords = vec!["test-smtp"];
            keywords.extend(pipelining.then_some("PIPELINING"));
            keywords.extend(chunking.then_some("CHUNKING"));
            keywords.extend(starttls.is_some().then_some("STARTTLS"));
            keywords.extend(login.is_some().then_some("AUTH PLAIN"));
            ehlo_reply(&keywords)
        } else if let Some(given) = command.strip_prefix("AUTH PLAIN ") {
            use base64::Engine;
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(given.trim())
                .unwrap_or_default();
            let expected = login.map(|(user, password)| format!("\0{user}\0{password}"));
            logged_in = expected.is_some_and(|e| e.as_bytes() == decoded);
            if logged_in {
                "235 2.7.0 Authentication successful\r\n".into()
            } else {
                "535 5.7.8 Authentication credentials invalid\r\n".into()
            }
        } else if upper.starts_with("MAIL FROM:") && login.is_some() && !logged_in {
            "530 5.7.0 Authentication required\r\n".into()
        } else if upper.starts_with("HELO") {
            "250 test-smtp\r\n".into()
        } else if upper == "STARTTLS" && starttls.is_some() {
            write.write_all(b"220 go ahead\r\n").await.ok()?;
            return starttls;
        } else if upper.starts_with("MAIL FROM:") {
            // As real servers do: a second MAIL inside a transaction is refused until RSET.
            let sender = path_address(&command[10..]);
            let refusal = {
                let mut state = state.lock().unwrap();
                state.mail_attempts.push(sender.clone());
                if lines.buffer().contains(&b'\n') {
                    state.pipelined_mails += 1;
                }
                if lines.buffer().windows(5).any(|w| w == b"BDAT ") {
                    state.whole_transactions += 1;
                }
                if take_action(&mut state.mail_drops, &sender).is_some() {
                    return None;
                }
                take_action(&mut state.sender_rules, &sender)
            };
            if in_transaction {
                "503 5.5.1 nested MAIL command\r\n".into()
            } else if let Some(code) = refusal {
                format!("{code} {} test rule for this sender\r\n", class(code))
            } else {
                in_transaction = true;
                from = sender;
                to.clear();
                "250 OK\r\n".into()
            }
        } else if upper.starts_with("RCPT TO:") && !in_transaction {
            "503 5.5.1 need MAIL first\r\n".into()
        } else if upper.starts_with("RCPT TO:") {
            let address = path_address(&command[8..]);
            match action_for(state, &address) {
                Some(Action::Drop) => return None,
                Some(
                    then @ (Action::DropAfterContent
                    | Action::CloseAfterMessage
                    | Action::RefuseContent(_)),
                ) => {
                    after_message = Some(then);
                    to.push(address);
                    "250 OK\r\n".into()
                }
                Some(Action::Reply(code)) => {
                    let text = format!("{code} {} test rule for this recipient\r\n", class(code));
                    if write.write_all(text.as_bytes()).await.is_err() || code == 421 {
                        return None;
                    }
                    continue;
                }
                Some(Action::ReplyWith(code, status)) => {
                    let text = format!("{code} {status}\r\n");
                    if write.write_all(text.as_bytes()).await.is_err() {
                        return None;
                    }
                    continue;
                }
                None => {
                    to.push(address);
                    "250 OK\r\n".into()
                }
            }
        } else if upper == "DATA" {
            if to.is_empty() {
                "503 no valid recipients\r\n".into()
            } else {
                if write.write_all(b"354 end with .\r\n").await.is_err() {
                    return None;
                }
                let mut data = String::new();
                loop {
                    line.clear();
                    match lines.read_line(&mut line).await {
                        Ok(0) | Err(_) => return None,
                        Ok(_) => {}
                    }
                    if line == ".\r\n" || line == ".\n" {
                        break;
                    }
                    let unstuffed = line.strip_prefix('.').unwrap_or(&line);
                    data.push_str(unstuffed);
                }
                in_transaction = false;
                let message = Message {
                    from: &from,
                    to: std::mem::take(&mut to),
                    data,
                    encrypted,
                };
                take_message(state, message, after_message.take(), write).await?
            }
        } else if let Some(arguments) = upper.strip_prefix("BDAT ") {
            // RFC 3030: the chunk is read whatever the state, then answered.
            let mut words = arguments.split_ascii_whitespace();
            let size = words.next().and_then(|n| n.parse::<usize>().ok())?;
            let last = words.next() == Some("LAST");
            let mut chunk = vec![0; size];
            lines.read_exact(&mut chunk).await.ok()?;
            chunks.extend_from_slice(&chunk);
            if !in_transaction {
                chunks.clear();
                "503 5.5.1 need MAIL first\r\n".into()
            } else if to.is_empty() {
                chunks.clear();
                "554 5.5.1 no valid recipients\r\n".into()
            } else if !last {
                format!("250 {size} octets taken\r\n")
            } else {
                in_transaction = false;
                let message = Message {
                    from: &from,
                    to: std::mem::take(&mut to),
                    data: String::from_utf8_lossy(&std::mem::take(&mut chunks)).into_owned(),
                    encrypted,
                };
                take_message(state, message, after_message.take(), write).await?
            }
        } else if upper == "RSET" {
            let hang = {
                let mut state = state.lock().unwrap();
                let hang = state.hung_rsets > 0;
                state.hung_rsets = state.hung_rsets.saturating_sub(1);
                hang
            };
            if hang {
                std::future::pending::<()>().await;
            }
            in_transaction = false;
            to.clear();
            chunks.clear();
            "250 OK\r\n".into()
        } else if upper == "NOOP" {
            "250 OK\r\n".into()
        } else if upper == "QUIT" {
            let _ = write.write_all(b"221 bye\r\n").await;
            return None;
        } else {
            "502 command not implemented\r\n".into()
        };
        if write.write_all(reply.as_bytes()).await.is_err() {
            return None;
        }
    }
}

/// A message's whole content has come (after DATA, or in the last BDAT chunk).
struct Message<'a> {
    from: &'a str,
    to: Vec<String>,
    data: String,
    encrypted: bool,
}

/// Record `message` unless a rule refuses it, and the reply to its end; `None`: the rule drops
/// the connection instead (after recording it, or after answering).
async fn take_message<W: AsyncWrite + Unpin>(
    state: &Mutex<State>,
    message: Message<'_>,
    rule: Option<Action>,
    write: &mut W,
) -> Option<String> {
    if let Some(Action::RefuseContent(code)) = rule {
        return Some(format!("{code} 5.7.1 test rule: message refused\r\n"));
    }
    let delay = {
        let mut state = state.lock().unwrap();
        state.messages.push(Received {
            from: message.from.to_owned(),
            to: message.to,
            data: message.data,
            accepted_at: std::time::Instant::now(),
            encrypted: message.encrypted,
        });
        state.reply_delay
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    match rule {
        Some(Action::DropAfterContent) => None,
        Some(Action::CloseAfterMessage) => {
            let _ = write.write_all(b"250 queued\r\n").await;
            None
        }
        _ => Some("250 queued\r\n".into()),
    }
}

fn class(code: u16) -> &'static str {
    match code / 100 {
        4 => "4.0.0",
        5 => "5.1.1",
        _ => "2.0.0",
    }
}
