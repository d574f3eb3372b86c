//! Unsubscribing by mail: the `mailto:` of a marketing message's `List-Unsubscribe` (RFC 2369)
//! is `unsubscribe@<public host>?subject=unsubscribe%20<token>`, so a mail client that uses it
//! sends a message whose subject carries the same signed token as the https link. The operator's
//! inbound mail (an MTA pipe, a provider's inbound route) hands that message, as received, to
//! `POST /unsubscribe/mail`; this module finds the token in it.
//!
//! The subject is read as a mail client may have written it: folded over several lines, encoded
//! (RFC 2047), with a prefix of its own (`Re:`, `[External]`), or with the `%20` left undecoded.
//! Every run of URL-safe base64 in it long enough to be a token is tried, at most
//! [`MAX_CANDIDATES`] of them; the first that verifies is the request. Nothing else in the
//! message counts: not its sender (a guest may write from another account, as they may click
//! the link from another device) and not its body.

use super::unsubscribe::{SigningKey, UnsubscribeClaim};
use mail_parser::MessageParser;

/// Runs of token characters tried per message: a subject is a few words, and each try is an
/// HMAC.
pub const MAX_CANDIDATES: usize = 8;
/// Shorter runs are words, not tokens: the shortest token (an organisation id of one character)
/// is 100 characters.
const MIN_TOKEN_CHARS: usize = 64;

/// Why a mailed request unsubscribes nobody.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MailRequestError {
    #[error("the request body is not an email message")]
    NotAMessage,
    #[error("the message has no subject")]
    NoSubject,
    #[error("the message's subject holds no valid unsubscribe token")]
    NoValidToken,
}

/// The claim of the token in the subject of `raw` (a whole message, headers and body).
pub fn claim_from_mail(key: &SigningKey, raw: &[u8]) -> Result<UnsubscribeClaim, MailRequestError> {
    let message = MessageParser::default()
        .parse_headers(raw)
        .ok_or(MailRequestError::NotAMessage)?;
    let subject = message.subject().ok_or(MailRequestError::NoSubject)?;
    candidates(subject)
        .find_map(|token| key.verify(token).ok())
        .ok_or(MailRequestError::NoValidToken)
}

/// The runs of URL-safe base64 in `subject` that may be a token, first to last.
fn candidates(subject: &str) -> impl Iterator<Item = &str> {
    subject
        .split("%20")
        .flat_map(|part| part.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_')))
        .filter(|run| run.len() >= MIN_TOKEN_CHARS)
        .take(MAX_CANDIDATES)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suppression::Channel;

    fn key() -> SigningKey {
        SigningKey::new(&[7; 32]).unwrap()
    }

    fn claim() -> UnsubscribeClaim {
        UnsubscribeClaim {
            delivery_id: 42,
            org_id: "acme".to_owned(),
            channel: Channel::Email,
            address_hash: "ab".repeat(32),
        }
    }

    fn mail(subject_header: &str) -> Vec<u8> {
        format!(
            "From: Guest <guest@example.com>\r\nTo: unsubscribe@jobs.wedsync.test\r\n\
             {subject_header}\r\nMIME-Version: 1.0\r\n\r\nSent from my phone\r\n"
        )
        .into_bytes()
    }

    #[test]
    fn the_token_is_read_from_the_subject_as_mail_clients_write_it() {
        let token = key().sign(&claim());
        let (head, tail) = token.split_at(40);
        let encoded = format!("=?UTF-8?B?{}?=", base64_of(&format!("unsubscribe {token}")));
        for subject in [
            format!("Subject: unsubscribe {token}"),
            format!("Subject: unsubscribe\r\n {token}"),
            format!("Subject: Re: [External] UNSUBSCRIBE {token}"),
            format!("Subject: unsubscribe%20{token}"),
            format!("Subject: {encoded}"),
            format!("Subject: =?utf-8?q?unsubscribe_{head}?=\r\n =?utf-8?q?{tail}?="),
        ] {
            assert_eq!(
                claim_from_mail(&key(), &mail(&subject)),
                Ok(claim()),
                "{subject}"
            );
        }
    }

    #[test]
    fn a_message_piped_with_bare_line_feeds_is_read_alike() {
        // What an MTA's pipe delivery hands on: the message as stored, lines ending in LF.
        let token = key().sign(&claim());
        let raw = format!(
            "Return-Path: <guest@example.com>\nFrom: guest@example.com\n\
             Subject: unsubscribe\n\t{token}\n\nSent from my phone\n"
        );
        assert_eq!(claim_from_mail(&key(), raw.as_bytes()), Ok(claim()));
        // With the mbox `From ` line a pipe may put first.
        let mbox = format!("From guest@example.com  Sun Dec  6 16:00:00 2026\n{raw}");
        assert_eq!(claim_from_mail(&key(), mbox.as_bytes()), Ok(claim()));
    }

    #[test]
    fn a_message_without_a_valid_token_unsubscribes_nobody() {
        let token = key().sign(&claim());
        let other_key = SigningKey::new(&[8; 32]).unwrap();
        let forged = other_key.sign(&claim());
        let mut altered = token.clone().into_bytes();
        altered[10] = if altered[10] == b'A' { b'B' } else { b'A' };
        let altered = String::from_utf8(altered).unwrap();
        for (raw, expected) in [
            (mail("X-Note: no subject"), MailRequestError::NoSubject),
            (mail("Subject: unsubscribe"), MailRequestError::NoValidToken),
            (
                mail(&format!("Subject: unsubscribe {forged}")),
                MailRequestError::NoValidToken,
            ),
            (
                mail(&format!("Subject: unsubscribe {altered}")),
                MailRequestError::NoValidToken,
            ),
            (Vec::new(), MailRequestError::NotAMessage),
        ] {
            assert_eq!(claim_from_mail(&key(), &raw), Err(expected));
        }
        // The token in the body does not count.
        let in_body = format!("Subject: please stop\r\n\r\nunsubscribe {token}\r\n");
        assert_eq!(
            claim_from_mail(&key(), in_body.as_bytes()),
            Err(MailRequestError::NoValidToken)
        );
    }

    #[test]
    fn only_the_first_candidates_are_tried() {
        let token = key().sign(&claim());
        let noise = vec!["x".repeat(MIN_TOKEN_CHARS); MAX_CANDIDATES].join(" ");
        let late = mail(&format!("Subject: {noise} {token}"));
        assert_eq!(
            claim_from_mail(&key(), &late),
            Err(MailRequestError::NoValidToken)
        );
        let short_words = "a ".repeat(50);
        let early = mail(&format!("Subject: {short_words}{token}"));
        assert_eq!(claim_from_mail(&key(), &early), Ok(claim()));
    }

    fn base64_of(text: &str) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(text)
    }
}
