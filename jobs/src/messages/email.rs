//! One delivery as a MIME message: sender, recipient, a `Message-ID` derived from the delivery
//! (stable across retries, so a receiving server or a log can tell a resend), and on marketing
//! mail the RFC 8058 one-click unsubscribe headers.

use super::template::Rendered;
use lettre::Message;
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};

/// Who sends what to whom.
#[derive(Debug, Clone, Copy)]
pub struct Envelope<'a> {
    pub sender_name: &'a str,
    pub sender_email: &'a str,
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

pub fn build(rendered: &Rendered, envelope: &Envelope<'_>) -> Result<Message, String> {
    let from = Mailbox::new(
        Some(envelope.sender_name.to_owned()),
        envelope
            .sender_email
            .parse()
            .map_err(|e| format!("sender address: {e}"))?,
    );
    let to = Mailbox::new(
        None,
        envelope
            .to
            .parse()
            .map_err(|e| format!("recipient address: {e}"))?,
    );
    let mut builder = Message::builder()
        .from(from)
        .to(to)
        .subject(rendered.subject.clone())
        .message_id(Some(envelope.message_id.to_owned()));
    if let Some((https, mailto)) = envelope.unsubscribe {
        builder = builder
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("List-Unsubscribe"),
                format!("<{https}>, <mailto:{mailto}>"),
            ))
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("List-Unsubscribe-Post"),
                "List-Unsubscribe=One-Click".to_owned(),
            ));
    }
    let message = match &rendered.html {
        Some(html) => builder.multipart(MultiPart::alternative_plain_html(
            rendered.text.clone(),
            html.clone(),
        )),
        None => builder.singlepart(SinglePart::plain(rendered.text.clone())),
    };
    message.map_err(|e| format!("message: {e}"))
}
