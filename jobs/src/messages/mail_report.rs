//! Bounces and complaints that arrive by mail, after the SMTP server accepted the message.
//!
//! A relay (the usual production set-up) accepts every message and reports a failure later:
//! a delivery status notification (DSN, RFC 3464: `multipart/report` with a
//! `message/delivery-status` part) mailed to the envelope sender (`WEDSYNC_BOUNCE_ADDRESS`), or,
//! for a guest who marked the message as spam, a feedback report from the mailbox provider's
//! feedback loop (ARF, RFC 5965: a `message/feedback-report` part). The operator's inbound mail
//! hands each such message, as received, to `POST /v1/mail-reports`; this module reads it.
//!
//! Which delivery a report is about comes from the original message's `Message-ID`, which
//! names it (`<delivery-{id}.{send}@…>`, [`super::email::message_id`]): reports return the
//! original's headers or the whole original, and some echo it in `In-Reply-To`. Every such id
//! anywhere in the report (decoded) counts; the report must name exactly one delivery. The
//! addresses in the report do not count: a forwarding mailbox reports the address it forwarded
//! to, not the guest's.

mod apply;
mod fields;

pub use apply::{Applied, AppliedDelivery, apply};
pub use fields::Verdict;
pub(crate) use fields::{address_fault, status_code};

use mail_parser::{MessageParser, MimeHeaders};
use std::collections::BTreeSet;

/// Longest status or diagnostic kept from a report (it becomes the delivery's `last_error`).
const MAX_DIAGNOSTIC_CHARS: usize = 300;

/// The delivery a report is about: the two parts of its `Message-ID`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DeliveryRef {
    pub delivery_id: i64,
    /// The send's id, lower-case.
    pub send_id: String,
}

/// What a report says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// A DSN; of several recipient groups, the worst.
    DeliveryStatus {
        verdict: Verdict,
        /// The enhanced status code as reported (`5.1.1`), if any.
        status: Option<String>,
        /// The remote server's answer (`smtp; 550 5.1.1 user unknown`), one line, if any.
        diagnostic: Option<String>,
    },
    /// A feedback report; `complaint` for the types a guest's "this is spam" sends (`abuse`,
    /// `fraud`), not for `not-spam`, `virus` or `auth-failure`, which say nothing against
    /// mailing them.
    Feedback {
        feedback_type: String,
        complaint: bool,
    },
}

/// A report and the delivery it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailReport {
    pub delivery: DeliveryRef,
    pub report: Report,
}

/// Why a mailed report changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    #[error("the request body is not an email message")]
    NotAMessage,
    #[error(
        "the message is neither a delivery status notification (message/delivery-status with a \
         recipient) nor a feedback report (message/feedback-report)"
    )]
    NotAReport,
    #[error("the report names no delivery of ours (no Message-ID of the form <delivery-…@…>)")]
    NoDelivery,
    #[error("the report names {0} different deliveries; a report is about one message")]
    SeveralDeliveries(usize),
}

/// The report in `raw` (a whole message, headers and body).
pub fn parse(raw: &[u8]) -> Result<MailReport, ReportError> {
    let message = MessageParser::default()
        .parse(raw)
        .ok_or(ReportError::NotAMessage)?;
    let mut report = None;
    for part in &message.parts {
        let Some(kind) = part.content_type() else {
            continue;
        };
        if !kind.ctype().eq_ignore_ascii_case("message") {
            continue;
        }
        let text = String::from_utf8_lossy(part.contents());
        let subtype = kind.subtype().unwrap_or_default().to_ascii_lowercase();
        report = match subtype.as_str() {
            "delivery-status" | "global-delivery-status" => delivery_status(&text),
            "feedback-report" => feedback(&text),
            _ => continue,
        };
        if report.is_some() {
            break;
        }
    }
    let report = report.ok_or(ReportError::NotAReport)?;
    let mut named = BTreeSet::new();
    named.extend(delivery_refs(&String::from_utf8_lossy(raw)));
    for part in &message.parts {
        named.extend(delivery_refs(&String::from_utf8_lossy(part.contents())));
    }
    let mut named = named.into_iter();
    match (named.next(), named.len()) {
        (None, _) => Err(ReportError::NoDelivery),
        (Some(delivery), 0) => Ok(MailReport { delivery, report }),
        (Some(_), others) => Err(ReportError::SeveralDeliveries(others + 1)),
    }
}

/// The worst recipient group of a `message/delivery-status` part (`None`: it has none).
fn delivery_status(text: &str) -> Option<Report> {
    fields::groups(text)
        .into_iter()
        .filter(|g| g.get("action").is_some() || g.get("final-recipient").is_some())
        .map(|g| {
            let status = g.get("status").map(one_line);
            let diagnostic = g.get("diagnostic-code").map(one_line);
            let mut verdict = fields::verdict(g.get("action"), status.as_deref());
            // The remote server refused our envelope sender, whatever code it chose (Postfix's
            // sender checks): not the guest's address.
            if verdict == Verdict::HardBounce
                && diagnostic
                    .as_deref()
                    .is_some_and(|d| d.to_ascii_lowercase().contains("sender address rejected"))
            {
                verdict = Verdict::Failed;
            }
            Report::DeliveryStatus {
                verdict,
                diagnostic,
                status,
            }
        })
        .max_by_key(|r| match r {
            Report::DeliveryStatus { verdict, .. } => *verdict,
            Report::Feedback { .. } => Verdict::Delivered,
        })
}

/// The `Feedback-Type` of a `message/feedback-report` part (`None`: it has none).
fn feedback(text: &str) -> Option<Report> {
    let groups = fields::groups(text);
    let feedback_type = groups.iter().find_map(|g| g.get("feedback-type"))?;
    let feedback_type = one_line(feedback_type).to_ascii_lowercase();
    Some(Report::Feedback {
        complaint: matches!(feedback_type.as_str(), "abuse" | "fraud"),
        feedback_type,
    })
}

/// Every `delivery-{id}.{send uuid}@` in `text`.
fn delivery_refs(text: &str) -> impl Iterator<Item = DeliveryRef> + '_ {
    const MARK: &str = "delivery-";
    text.match_indices(MARK).filter_map(|(at, _)| {
        let rest = &text[at + MARK.len()..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let delivery_id = rest[..digits].parse::<i64>().ok()?;
        let rest = rest[digits..].strip_prefix('.')?;
        let send_id = rest.get(..36).filter(|s| is_uuid(s))?;
        rest[36..].starts_with('@').then(|| DeliveryRef {
            delivery_id,
            send_id: send_id.to_ascii_lowercase(),
        })
    })
}

/// `8-4-4-4-12` hex digits.
fn is_uuid(text: &str) -> bool {
    text.len() == 36
        && text.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// Control characters as spaces, trimmed, at most [`MAX_DIAGNOSTIC_CHARS`].
fn one_line(text: &str) -> String {
    super::one_line::one_line(text, MAX_DIAGNOSTIC_CHARS)
}

#[cfg(test)]
mod tests;
