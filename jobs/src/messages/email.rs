//! One delivery as a MIME message: sender, recipient, a `Message-ID` derived from the delivery
//! (stable across retries, so a receiving server or a log can tell a resend), and on marketing
//! mail the RFC 8058 one-click unsubscribe headers.
//!
//! The message is written straight to bytes, once per delivery ([`Sender::build`]): lettre's
//! header and body encoders do the encoding (RFC 2047 words and folding in headers, 7bit or
//! quoted-printable bodies with CRLF line ends), but not its `MessageBuilder`, which parses
//! every address header it was just given back out of its encoded text (to check the sender and
//! derive the envelope) and builds a tree of parts to format and drop: about a sixth of a
//! worker's CPU per message, measured (`docs/benchmarks.md`). The sender's header and address
//! are parsed once per batch job.

use super::template::Rendered;
pub use lettre::Address;
use lettre::address::Envelope;
use lettre::message::header::{self, HeaderName, HeaderValue, Headers};
use lettre::message::{Body, Mailbox, Mailboxes};
use std::io::Write as _;

/// A message ready for SMTP: its envelope and its content as it goes on the wire (before
/// dot-stuffing).
#[derive(Debug, Clone)]
pub struct Email {
    pub envelope: Envelope,
    pub formatted: Vec<u8>,
}

impl From<lettre::Message> for Email {
    fn from(message: lettre::Message) -> Self {
        Email {
            envelope: message.envelope().clone(),
            formatted: message.formatted(),
        }
    }
}

/// Who a delivery's message is to, and how it is known.
#[derive(Debug, Clone, Copy)]
pub struct Recipient<'a> {
    pub to: &'a str,
    pub message_id: &'a str,
    /// Marketing mail: the https unsubscribe URL and the mailto address.
    pub unsubscribe: Option<(&'a str, &'a str)>,
}

/// The `Message-ID` of delivery `delivery_id` of send `send_id` from `sender_email`'s domain.
pub fn message_id(delivery_id: i64, send_id: &str, sender_email: &str) -> String {
    let domain = sender_email
        .rsplit_once('@')
        .map_or("wedsync.invalid", |(_, d)| d);
    format!("<delivery-{delivery_id}.{send_id}@{domain}>")
}

/// A send's sender, parsed and encoded once for all of its messages.
#[derive(Debug, Clone)]
pub struct Sender {
    /// The envelope sender (`MAIL FROM`, which the receiving server turns into `Return-Path`):
    /// where bounces go.
    envelope_from: Address,
    from: HeaderValue,
}

impl Sender {
    pub fn new(name: &str, email: &str) -> Result<Sender, String> {
        let address: Address = email.parse().map_err(|e| format!("sender address: {e}"))?;
        let mailbox = Mailbox::new(Some(name.to_owned()), address.clone());
        let from = header::Header::display(&header::From::from(Mailboxes::from(mailbox)));
        Ok(Sender {
            envelope_from: address,
            from,
        })
    }

    /// Bounces go to `bounces` (`WEDSYNC_BOUNCE_ADDRESS`) rather than to the sender's own
    /// mailbox, where nobody reads them for us (`messages::mail_report`). `From` is unchanged.
    pub fn bouncing_to(mut self, bounces: Option<&Address>) -> Sender {
        if let Some(bounces) = bounces {
            self.envelope_from = bounces.clone();
        }
        self
    }

    /// The message of `rendered` to `recipient`: text alone, or text and HTML as
    /// `multipart/alternative`.
    pub fn build(&self, rendered: &Rendered, recipient: &Recipient<'_>) -> Result<Email, String> {
        let to: Address = recipient
            .to
            .parse()
            .map_err(|e| format!("recipient address: {e}"))?;
        let mut headers = Headers::with_capacity(8);
        headers.insert_raw(self.from.clone());
        headers.set(header::To::from(Mailboxes::from(Mailbox::new(
            None,
            to.clone(),
        ))));
        headers.set(header::Subject::from(rendered.subject.clone()));
        headers.set(header::MessageId::from(recipient.message_id.to_owned()));
        headers.set(header::Date::now());
        if let Some((https, mailto)) = recipient.unsubscribe {
            headers.insert_raw(HeaderValue::new(
                HeaderName::new_from_ascii_str("List-Unsubscribe"),
                format!("<{https}>, <mailto:{mailto}>"),
            ));
            headers.insert_raw(HeaderValue::new(
                HeaderName::new_from_ascii_str("List-Unsubscribe-Post"),
                "List-Unsubscribe=One-Click".to_owned(),
            ));
        }
        let text = Body::new(rendered.text.clone());
        let html = rendered.html.clone().map(Body::new);
        let size = 1_024 + text.len() + html.as_ref().map_or(0, Body::len);
        let mut out = Vec::with_capacity(size);
        write!(out, "{headers}MIME-Version: 1.0\r\n").expect("writing to a Vec");
        match html {
            None => part(&mut out, "text/plain", text),
            Some(html) => {
                let boundary = format!("{:032x}", rand::random::<u128>());
                write!(
                    out,
                    // Folded as lettre folds it: the line stays within 78 characters.
                    "Content-Type: multipart/alternative;\r\n boundary=\"{boundary}\"\r\n\r\n"
                )
                .expect("writing to a Vec");
                for (mime, body) in [("text/plain", text), ("text/html", html)] {
                    write!(out, "--{boundary}\r\n").expect("writing to a Vec");
                    part(&mut out, mime, body);
                }
                write!(out, "--{boundary}--\r\n").expect("writing to a Vec");
            }
        }
        let envelope = Envelope::new(Some(self.envelope_from.clone()), vec![to])
            .map_err(|e| format!("envelope: {e}"))?;
        Ok(Email {
            envelope,
            formatted: out,
        })
    }
}

/// One part's headers and its encoded body, as lettre's `SinglePart` writes them.
fn part(out: &mut Vec<u8>, mime: &str, body: Body) {
    write!(
        out,
        "Content-Type: {mime}; charset=utf-8\r\nContent-Transfer-Encoding: {}\r\n\r\n",
        body.encoding()
    )
    .expect("writing to a Vec");
    out.extend_from_slice(&body.into_vec());
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use lettre::message::MultiPart;

    fn rendered(html: bool) -> Rendered {
        Rendered {
            subject: "Die Trauung beginnt um 15 Uhr, Zoë".into(),
            text: format!("Liebe Zoë,\nbis bald.\n{}", "lang ".repeat(40)),
            html: html.then(|| "<p>Liebe Zo&euml;, bis bald.</p>".into()),
        }
    }

    /// The same message through lettre's `MessageBuilder`, headers in the same order.
    fn through_lettre(rendered: &Rendered, to: &str, message_id: &str) -> Vec<u8> {
        let builder = lettre::Message::builder()
            .from("Ann und Bob <hello@ann-and-bob.example>".parse().unwrap())
            .to(to.parse().unwrap())
            .subject(rendered.subject.clone())
            .message_id(Some(message_id.to_owned()))
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("List-Unsubscribe"),
                "<https://x.example/u?t=1>, <mailto:u@x.example?subject=u>".to_owned(),
            ))
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("List-Unsubscribe-Post"),
                "List-Unsubscribe=One-Click".to_owned(),
            ));
        let message = match &rendered.html {
            Some(html) => builder.multipart(MultiPart::alternative_plain_html(
                rendered.text.clone(),
                html.clone(),
            )),
            None => builder.singlepart(lettre::message::SinglePart::plain(rendered.text.clone())),
        };
        message.unwrap().formatted()
    }

    /// Without the `Date` line and with the boundary named `B`: what differs by construction.
    fn comparable(formatted: &[u8]) -> String {
        let text = String::from_utf8(formatted.to_vec()).unwrap();
        let text: String = text
            .split_inclusive("\r\n")
            .filter(|line| !line.starts_with("Date: "))
            .collect();
        match text.split_once("boundary=\"") {
            Some((_, rest)) => {
                let boundary = rest.split('"').next().unwrap().to_owned();
                text.replace(&boundary, "B")
            }
            None => text,
        }
    }

    #[test]
    fn a_message_is_written_as_lettres_message_builder_writes_it() {
        let sender = Sender::new("Ann und Bob", "hello@ann-and-bob.example").unwrap();
        for html in [true, false] {
            let rendered = rendered(html);
            let ours = sender
                .build(
                    &rendered,
                    &Recipient {
                        to: "guest@example.com",
                        message_id: "<delivery-1.s@ann-and-bob.example>",
                        unsubscribe: Some(("https://x.example/u?t=1", "u@x.example?subject=u")),
                    },
                )
                .unwrap();
            let lettre = through_lettre(
                &rendered,
                "guest@example.com",
                "<delivery-1.s@ann-and-bob.example>",
            );
            assert_eq!(comparable(&ours.formatted), comparable(&lettre));
            let text = String::from_utf8(ours.formatted).unwrap();
            assert!(text.contains("\r\nDate: "), "{text}");
            assert!(text.contains("quoted-printable"), "{text}");
            assert_eq!(
                ours.envelope.from().map(ToString::to_string).as_deref(),
                Some("hello@ann-and-bob.example")
            );
            assert_eq!(ours.envelope.to()[0].to_string(), "guest@example.com");
        }
    }

    #[test]
    fn a_line_break_in_the_subject_starts_no_header() {
        let sender = Sender::new("Ann", "ann@example.com").unwrap();
        let rendered = Rendered {
            subject: "Hello\r\nBcc: everyone@example.com".into(),
            text: "Hi".into(),
            html: None,
        };
        let email = sender
            .build(
                &rendered,
                &Recipient {
                    to: "guest@example.com",
                    message_id: "<m@example.com>",
                    unsubscribe: None,
                },
            )
            .unwrap();
        let text = String::from_utf8(email.formatted).unwrap();
        assert!(!text.contains("\r\nBcc:"), "{text}");
        assert!(!text.contains("List-Unsubscribe"), "{text}");
    }

    #[test]
    fn an_invalid_address_is_an_error_not_a_message() {
        assert!(Sender::new("Ann", "not an address").is_err());
        let sender = Sender::new("Ann", "ann@example.com").unwrap();
        let built = sender.build(
            &rendered(false),
            &Recipient {
                to: "nobody",
                message_id: "<m@example.com>",
                unsubscribe: None,
            },
        );
        assert!(built.unwrap_err().starts_with("recipient address"));
    }
}
