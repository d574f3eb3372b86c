//! One mail transaction (MAIL, RCPT, DATA, the content) on a pooled connection, in as few round
//! trips as the server allows.
//!
//! - **PIPELINING (RFC 2920) with CHUNKING (RFC 3030)**, when the server offers both (Postfix,
//!   Exim, the large providers): MAIL, every RCPT, `BDAT <size> LAST` and the content as it is go
//!   out in one write, and the replies are read in order. One round trip per message, one write,
//!   no dot-stuffing.
//! - **PIPELINING alone**: MAIL, every RCPT and DATA go out in one write and their replies are
//!   read in order; then the content. Two round trips per message.
//! - Otherwise one command at a time, as lettre does: four round trips (MAIL, RCPT, DATA, the
//!   content each wait for their reply). Against a provider 20 ms away a connection carries two
//!   or four times the messages per second of that.
//! - **The content and its closing `.` in one write**, always (lettre writes them in two).
//!
//! With CHUNKING the content goes out before any reply is read, so a reply that does not come —
//! to MAIL as much as to BDAT — leaves it unknown whether the server took the message (as a
//! missing reply to the final `.` does): it is never sent again on a new connection at once
//! (`smtp_pool`), which is why a kept connection is looked at before it is used
//! ([`Connection::peer`]).
//!
//! lettre has no pipelined send, but its connection writes any `Display` as one command and reads
//! replies one at a time, which is all pipelining needs; connecting, TLS and authentication stay
//! lettre's.

use lettre::address::Envelope;
use lettre::transport::smtp::client::AsyncSmtpConnection;
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use std::fmt;

/// A pooled connection and what its server offers beyond what lettre records.
pub(super) struct Connection {
    pub smtp: AsyncSmtpConnection,
    pub pipelining: bool,
    /// CHUNKING (RFC 3030): the content may go as `BDAT <size> LAST`, with no `354` to wait for.
    pub chunking: bool,
    /// The same socket, for [`Connection::peer`] (a duplicate of its descriptor, closed with it).
    probe: std::net::TcpStream,
}

/// What a kept connection's socket holds while nothing is expected from the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Peer {
    /// Nothing: the session is as the last reply left it.
    Quiet,
    /// The server closed the connection.
    Closed,
    /// Bytes nobody asked for (a server announcing `421` before it goes, TLS records), or the
    /// socket could not be read: worth a NOOP before trusting it.
    Unsure,
}

impl Connection {
    /// Ask the server again what it offers (lettre's own EHLO keeps no PIPELINING): one round
    /// trip per connection, before any login. A server that refuses this second EHLO gets one
    /// command at a time, as lettre sends them.
    pub async fn new(
        mut smtp: AsyncSmtpConnection,
        probe: std::net::TcpStream,
        hello: &ClientId,
    ) -> Result<Self, lettre::transport::smtp::Error> {
        let reply = match smtp
            .command(lettre::transport::smtp::commands::Ehlo::new(hello.clone()))
            .await
        {
            Ok(reply) => Some(reply),
            Err(e) if e.status().is_some() => None,
            // No answer at all: the connection is gone.
            Err(e) => return Err(e),
        };
        let offered = |keyword| {
            reply
                .as_ref()
                .is_some_and(|reply| reply.message().any(|line| offers(line, keyword)))
        };
        let (pipelining, chunking) = (offered("PIPELINING"), offered("CHUNKING"));
        Ok(Connection {
            smtp,
            pipelining,
            chunking,
            probe,
        })
    }

    /// Whether the server closed (or spoke on) this kept connection since its last reply, read
    /// from the socket without a round trip: a peek that does not wait (the socket is
    /// non-blocking). A whole transaction goes out in one write when the server offers CHUNKING,
    /// so a closed connection has to be found before it, not by its first reply.
    pub fn peer(&self) -> Peer {
        match self.probe.peek(&mut [0u8; 1]) {
            Ok(0) => Peer::Closed,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Peer::Quiet,
            Ok(_) | Err(_) => Peer::Unsure,
        }
    }
}

/// An EHLO reply line naming `keyword` (keywords are case-insensitive).
fn offers(line: &str, keyword: &str) -> bool {
    line.split_ascii_whitespace()
        .next()
        .is_some_and(|offered| offered.eq_ignore_ascii_case(keyword))
}

/// The step of a mail transaction: whom a refusal is about depends on it (a 5xx to RCPT is
/// about the recipient, one to MAIL about our sender, one after the content about the message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    Mail,
    Rcpt,
    Data,
    Content,
}

impl Step {
    /// The command as an error names it.
    pub fn command(self) -> &'static str {
        match self {
            Step::Mail => "MAIL",
            Step::Rcpt => "RCPT",
            Step::Data => "DATA",
            Step::Content => "the message",
        }
    }
}

/// A step that failed: refused by the server (`error.status()` is its code) or unanswered.
#[derive(Debug)]
pub(super) struct StepFailed {
    pub step: Step,
    pub error: lettre::transport::smtp::Error,
}

impl StepFailed {
    /// Failed before the message's content went out: the server cannot have taken it.
    pub fn before_content(&self) -> bool {
        self.step != Step::Content
    }
}

/// Run one transaction. Parameters for non-ASCII addresses or content are given when the server
/// offers them; when it does not, its answer says what it makes of the message (lettre would
/// refuse it before asking).
pub(super) async fn transact(
    conn: &mut Connection,
    envelope: &Envelope,
    message: &[u8],
) -> Result<(), StepFailed> {
    let mail = Mail::new(
        envelope.from().cloned(),
        parameters(conn, envelope, message),
    );
    let rcpts: Vec<Rcpt> = envelope
        .to()
        .iter()
        .map(|to| Rcpt::new(to.clone(), Vec::new()))
        .collect();
    if conn.pipelining
        && conn.chunking
        && let Ok(text) = std::str::from_utf8(message)
    {
        return chunked(&mut conn.smtp, mail, &rcpts, text).await;
    }
    if conn.pipelining {
        pipelined(&mut conn.smtp, mail, &rcpts).await?;
    } else {
        step_by_step(&mut conn.smtp, mail, &rcpts).await?;
    }
    content(&mut conn.smtp, message).await
}

fn parameters(conn: &Connection, envelope: &Envelope, message: &[u8]) -> Vec<MailParameter> {
    let info = conn.smtp.server_info();
    let mut parameters = Vec::new();
    let non_ascii = envelope
        .from()
        .into_iter()
        .chain(envelope.to())
        .any(|a| !AsRef::<str>::as_ref(a).is_ascii());
    if non_ascii && info.supports_feature(Extension::SmtpUtfEight) {
        parameters.push(MailParameter::SmtpUtfEight);
    }
    if !message.is_ascii() && info.supports_feature(Extension::EightBitMime) {
        parameters.push(MailParameter::Body(MailBodyParameter::EightBitMime));
    }
    parameters
}

async fn step_by_step(
    smtp: &mut AsyncSmtpConnection,
    mail: Mail,
    rcpts: &[Rcpt],
) -> Result<(), StepFailed> {
    let failed = |step| move |error| StepFailed { step, error };
    smtp.command(mail).await.map_err(failed(Step::Mail))?;
    for rcpt in rcpts {
        smtp.command(rcpt).await.map_err(failed(Step::Rcpt))?;
    }
    smtp.command(Data).await.map_err(failed(Step::Data))?;
    Ok(())
}

/// MAIL, RCPT… and DATA in one write; every reply is read, in order, whatever the earlier ones
/// said (the server answers each), and the first refusal is the transaction's. A reply that does
/// not come ends it there: the connection is unusable.
async fn pipelined(
    smtp: &mut AsyncSmtpConnection,
    mail: Mail,
    rcpts: &[Rcpt],
) -> Result<(), StepFailed> {
    let mut replies = Replies::default();
    let first = smtp.command(Commands { mail, rcpts }).await;
    let mut result = replies.note(Step::Mail, first, Step::Mail);
    for _ in rcpts {
        if result.is_ok() {
            result = replies.note(Step::Rcpt, smtp.read_response().await, Step::Rcpt);
        }
    }
    let data = if result.is_ok() {
        Some(smtp.read_response().await)
    } else {
        None
    };
    let data_accepted = matches!(data, Some(Ok(_)));
    if let Some(reply) = data {
        result = result.and(replies.note(Step::Data, reply, Step::Data));
    }
    let Some(refused) = replies.refused else {
        return result;
    };
    if data_accepted {
        // A server that took DATA although it refused the sender or every recipient: end the
        // (empty) message so the session is back in step; the refusal stands.
        let _ = smtp.command(EndOfData).await;
    }
    // A reply that did not come after a refusal leaves the refusal as the cause; the caller
    // drops the connection when its reset fails.
    Err(refused)
}

/// The whole transaction in one write: MAIL, RCPT…, `BDAT <size> LAST` and the content as it is
/// (no dot-stuffing, no closing `.`); then every reply, in order. The first refusal is the
/// transaction's; the server answers BDAT even after refusing every recipient, so its reply is
/// read (and then does not count) to keep the session in step. The content went out with the
/// commands, so a reply that does not come (and no refusal before it) leaves the message's fate
/// unknown, whichever reply it was.
async fn chunked(
    smtp: &mut AsyncSmtpConnection,
    mail: Mail,
    rcpts: &[Rcpt],
    message: &str,
) -> Result<(), StepFailed> {
    let mut replies = Replies::default();
    // Whichever reply does not come, the content is out: `Step::Content`.
    let unanswered = Step::Content;
    let first = smtp
        .command(Transaction {
            mail,
            rcpts,
            message,
        })
        .await;
    let mut result = replies.note(Step::Mail, first, unanswered);
    for _ in rcpts {
        if result.is_ok() {
            result = replies.note(Step::Rcpt, smtp.read_response().await, unanswered);
        }
    }
    if result.is_ok() {
        result = replies.note(Step::Content, smtp.read_response().await, unanswered);
    }
    // As pipelined: a reply that did not come after a refusal leaves the refusal as the cause.
    match replies.refused {
        Some(refused) => Err(refused),
        None => result,
    }
}

/// The replies of pipelined commands, read in order: the first refusal is kept, to be the
/// transaction's once every reply is read.
#[derive(Default)]
struct Replies {
    refused: Option<StepFailed>,
}

impl Replies {
    /// Note the reply to `step`; one that does not come fails the transaction at once, as
    /// `unanswered` (the step the caller knows the message's fate by).
    fn note(
        &mut self,
        step: Step,
        reply: Result<lettre::transport::smtp::response::Response, lettre::transport::smtp::Error>,
        unanswered: Step,
    ) -> Result<(), StepFailed> {
        match reply {
            Ok(_) => Ok(()),
            Err(error) if error.status().is_some() => {
                self.refused.get_or_insert(StepFailed { step, error });
                Ok(())
            }
            Err(error) => Err(StepFailed {
                step: unanswered,
                error,
            }),
        }
    }
}

/// A whole transaction for a server offering PIPELINING and CHUNKING.
struct Transaction<'a> {
    mail: Mail,
    rcpts: &'a [Rcpt],
    message: &'a str,
}

impl fmt::Display for Transaction<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.mail)?;
        for rcpt in self.rcpts {
            write!(f, "{rcpt}")?;
        }
        write!(f, "BDAT {} LAST\r\n", self.message.len())?;
        f.write_str(self.message)
    }
}

/// The content, dot-stuffed, and its closing `.` in one write.
async fn content(smtp: &mut AsyncSmtpConnection, message: &[u8]) -> Result<(), StepFailed> {
    let failed = |error| StepFailed {
        step: Step::Content,
        error,
    };
    match std::str::from_utf8(message) {
        Ok(text) => smtp.command(DotStuffed(text)).await.map_err(failed)?,
        // lettre writes any bytes; ours only pass through `Display` as text.
        Err(_) => smtp.message(message).await.map_err(failed)?,
    };
    Ok(())
}

/// The pipelined commands of a transaction, written as one.
struct Commands<'a> {
    mail: Mail,
    rcpts: &'a [Rcpt],
}

impl fmt::Display for Commands<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.mail)?;
        for rcpt in self.rcpts {
            write!(f, "{rcpt}")?;
        }
        write!(f, "{Data}")
    }
}

/// The end of a message's content, alone.
struct EndOfData;

impl fmt::Display for EndOfData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(".\r\n")
    }
}

/// A message's content as SMTP carries it (RFC 5321 §4.5.2): a line starting with `.` gets
/// another, and `<CRLF>.<CRLF>` ends it — byte for byte what lettre's `message` writes.
struct DotStuffed<'a>(&'a str);

impl fmt::Display for DotStuffed<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.0;
        if text.starts_with('.') {
            f.write_str(".")?;
        }
        let mut from = 0;
        for (at, _) in text.match_indices("\r\n.") {
            f.write_str(&text[from..at + 2])?;
            f.write_str(".")?;
            from = at + 2;
        }
        f.write_str(&text[from..])?;
        f.write_str("\r\n.\r\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_stuffing_doubles_a_dot_at_the_start_of_a_line_only() {
        let stuffed = DotStuffed(".a\r\nb.c\r\n.\r\n..d\r\ne\r.f").to_string();
        assert_eq!(stuffed, "..a\r\nb.c\r\n..\r\n...d\r\ne\r.f\r\n.\r\n");
        assert_eq!(DotStuffed("").to_string(), "\r\n.\r\n");
    }

    #[test]
    fn keywords_are_found_among_the_ehlo_lines() {
        assert!(offers("PIPELINING", "PIPELINING"));
        assert!(offers("pipelining", "PIPELINING"));
        assert!(!offers("8BITMIME", "PIPELINING"));
        assert!(!offers("XPIPELININGX", "PIPELINING"));
        assert!(!offers("", "PIPELINING"));
        assert!(offers("CHUNKING", "CHUNKING"));
    }

    #[test]
    fn a_chunked_transaction_is_one_write_with_the_content_as_it_is() {
        let mail = Mail::new(Some("a@x.example".parse().unwrap()), Vec::new());
        let rcpts = [Rcpt::new("b@y.example".parse().unwrap(), Vec::new())];
        let written = Transaction {
            mail,
            rcpts: &rcpts,
            message: "Subject: hi\r\n\r\n.a line starting with a dot\r\n",
        }
        .to_string();
        assert_eq!(
            written,
            "MAIL FROM:<a@x.example>\r\nRCPT TO:<b@y.example>\r\nBDAT 44 LAST\r\n\
             Subject: hi\r\n\r\n.a line starting with a dot\r\n"
        );
    }

    #[test]
    fn pipelined_commands_are_one_write_in_order() {
        let mail = Mail::new(Some("a@x.example".parse().unwrap()), Vec::new());
        let rcpts = [Rcpt::new("b@y.example".parse().unwrap(), Vec::new())];
        let written = Commands {
            mail,
            rcpts: &rcpts,
        }
        .to_string();
        assert_eq!(
            written,
            "MAIL FROM:<a@x.example>\r\nRCPT TO:<b@y.example>\r\nDATA\r\n"
        );
    }
}
