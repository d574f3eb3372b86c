//! What an SMS provider's HTTP answer means for the delivery (the classes of
//! `providers/error.rs`):
//!
//! | answer | class | why |
//! | --- | --- | --- |
//! | 2xx with a JSON `sid` | `Ok(Some(sid))` | accepted |
//! | 2xx whose answer was cut off before a `sid` | `Ok(None)` | accepted, its id unknown: the provider took the text, and sending it again (or through the secondary) would be a duplicate |
//! | 2xx, answered whole, without one | `Unavailable` | not the provider we expect (a captive proxy, a wrong URL) |
//! | 400, 422 with the code of an opt-out ([`OPTED_OUT_CODE`]) | `OptedOut` | the guest replied STOP: suppressed for every organisation, until they reply START |
//! | 400, 422 with a provider code about the recipient ([`RECIPIENT_CODES`]) | `Rejected` | the number is bad: the delivery bounces |
//! | 400, 422 with a provider code about this message ([`MESSAGE_CODES`]) | `Refused` | the same answer every time, and neither the number's fault nor the provider's: `failed` |
//! | 429 | `Deferred`, `retry_after` from `Retry-After` | the provider works but wants us slower |
//! | 401, 403 | `Unavailable` | our credentials: must not bounce every guest |
//! | 404 | `Unavailable` | a wrong `WEDSYNC_SMS_URL` or account: must not bounce every guest |
//! | 5xx, 3xx, any other 4xx, a 400/422 with another code or none | `Unavailable` | the provider or our set-up is failing, not the number |
//!
//! Only a code that names the recipient bounces: a bounce puts the number on the suppression
//! list for good, and an answer about our request (a sender the account may not use, a region
//! not enabled, a malformed body) would otherwise suppress every guest of the send. What is not
//! known to be the number's fault is retried and counts against the breaker, so a set-up error
//! opens it and the send waits, visibly, instead of bouncing.
//!
//! Reasons carry the status and the provider's short message and code (Twilio puts `message`
//! and `code` in a JSON body), trimmed to one line.

use super::super::SendError;
use chrono::{DateTime, Utc};
use std::time::Duration;

/// Longest provider message kept in a reason.
const MAX_MESSAGE_CHARS: usize = 200;

/// Twilio error codes that are about the recipient's number: 21211 invalid `To`, 21214 `To`
/// cannot be reached, 21217 not a valid number, 21265 a short code, 21401 invalid number,
/// 21407 the number's type takes no SMS, 21421 invalid number, 21614 not a mobile number,
/// 21635 a landline. (Not 21612, "not reachable with this `To`/`From` combination": it also
/// comes from a sender that may not text a country, which would suppress every guest there.)
pub(crate) const RECIPIENT_CODES: [u64; 9] = [
    21211, 21214, 21217, 21265, 21401, 21407, 21421, 21614, 21635,
];

/// Twilio error codes that refuse this message for good, but neither its number nor the
/// provider: 21612 the `To`/`From` combination cannot be reached, 21617 the body is over the
/// length limit (an emoji counts double), 21619 the body is empty. Retrying gets the same
/// answer, and counting them against the breaker would let a few such guests stop every send.
pub(crate) const MESSAGE_CODES: [u64; 3] = [21612, 21617, 21619];

/// Twilio's error code for a recipient who replied STOP to the sending number: not a bad
/// number, a guest's choice, which their START reverses.
pub(crate) const OPTED_OUT_CODE: u64 = 21610;

/// The parts of an answer classification looks at.
#[derive(Debug, Clone, Copy)]
pub(super) struct Reply<'a> {
    pub status: u16,
    pub retry_after: Option<&'a str>,
    pub body: &'a [u8],
    /// The body arrived whole (not cut off by a timeout or a dropped connection).
    pub whole: bool,
}

/// The provider's message id (`None`: accepted, but the answer was cut off before it), or the
/// class of the failure.
pub(super) fn classify(reply: Reply<'_>, now: DateTime<Utc>) -> Result<Option<String>, SendError> {
    let status = reply.status;
    if (200..300).contains(&status) {
        return match accepted_sid(reply.body) {
            Some(sid) => Ok(Some(sid)),
            None if !reply.whole => Ok(None),
            None => Err(SendError::Unavailable(format!(
                "HTTP {status}, but the answer is not the expected JSON with a `sid`"
            ))),
        };
    }
    let reason = reason(status, reply.body);
    Err(match status {
        400 | 422 if provider_code(reply.body) == Some(OPTED_OUT_CODE) => {
            SendError::OptedOut(reason)
        }
        400 | 422 if provider_code(reply.body).is_some_and(|c| RECIPIENT_CODES.contains(&c)) => {
            SendError::Rejected(reason)
        }
        400 | 422 if provider_code(reply.body).is_some_and(|c| MESSAGE_CODES.contains(&c)) => {
            SendError::Refused(reason)
        }
        429 => SendError::Deferred {
            reason,
            retry_after: reply.retry_after.and_then(|v| retry_after(v, now)),
        },
        401 | 403 => SendError::Unavailable(format!("{reason} (check the provider credentials)")),
        404 => SendError::Unavailable(format!("{reason} (check the provider URL and account)")),
        _ => SendError::Unavailable(reason),
    })
}

/// The code of the provider's error document, a number or a numeric string.
fn provider_code(body: &[u8]) -> Option<u64> {
    let answer = serde_json::from_slice::<serde_json::Value>(body).ok()?;
    match answer.get("code")? {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The `sid`, without control characters (PostgreSQL text holds no NUL) and at most
/// [`MAX_MESSAGE_CHARS`] long.
fn accepted_sid(body: &[u8]) -> Option<String> {
    let answer: serde_json::Value = serde_json::from_slice(body).ok()?;
    let sid: String = answer
        .get("sid")?
        .as_str()?
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_MESSAGE_CHARS)
        .collect();
    let sid = sid.trim();
    (!sid.is_empty()).then(|| sid.to_owned())
}

/// `HTTP 400 Bad Request: <provider message> (provider code 21211)`.
fn reason(status: u16, body: &[u8]) -> String {
    let name = reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .map(|r| format!(" {r}"))
        .unwrap_or_default();
    let mut reason = format!("HTTP {status}{name}");
    let answer: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let field = |key: &str| answer.as_ref().and_then(|a| a.get(key)).cloned();
    if let Some(message) = field("message").and_then(|m| m.as_str().map(one_line))
        && !message.is_empty()
    {
        reason = format!("{reason}: {message}");
    }
    match field("code") {
        Some(serde_json::Value::Number(code)) => {
            reason = format!("{reason} (provider code {code})")
        }
        Some(serde_json::Value::String(code)) if !code.is_empty() => {
            reason = format!("{reason} (provider code {})", one_line(&code));
        }
        _ => {}
    }
    reason
}

/// Control characters become spaces; at most [`MAX_MESSAGE_CHARS`].
fn one_line(text: &str) -> String {
    crate::messages::one_line::one_line(text, MAX_MESSAGE_CHARS)
}

/// `Retry-After` as delay-seconds or an HTTP date (a date in the past: retry now).
fn retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = DateTime::parse_from_rfc2822(value).ok()?;
    Some(
        (at.with_timezone(&Utc) - now)
            .to_std()
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> Result<Option<String>, SendError> {
        answer_after(status, None, body)
    }

    fn answer_after(
        status: u16,
        retry: Option<&str>,
        body: &str,
    ) -> Result<Option<String>, SendError> {
        let now = DateTime::parse_from_rfc3339("2026-06-06T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        classify(
            Reply {
                status,
                retry_after: retry,
                body: body.as_bytes(),
                whole: true,
            },
            now,
        )
    }

    const TWILIO_400: &str = r#"{"code": 21211, "message": "The 'To' number is not a valid phone number.", "more_info": "https://www.twilio.com/docs/errors/21211", "status": 400}"#;

    #[test]
    fn a_2xx_with_a_sid_is_accepted() {
        assert_eq!(
            answer(201, r#"{"sid": "SM0123", "status": "queued"}"#),
            Ok(Some("SM0123".into()))
        );
        assert_eq!(
            answer(201, r#"{"sid": "SM\u0000\n0123"}"#),
            Ok(Some("SM0123".into()))
        );
    }

    #[test]
    fn a_2xx_cut_off_before_its_sid_is_accepted_without_one() {
        let now = Utc::now();
        let reply = |whole| Reply {
            status: 201,
            retry_after: None,
            body: br#"{"account_sid": "AC1", "si"#,
            whole,
        };
        assert_eq!(classify(reply(false), now), Ok(None));
        assert!(matches!(
            classify(reply(true), now),
            Err(SendError::Unavailable(_))
        ));
        // A refusal cut off is still a refusal: nothing was accepted.
        let cut_refusal = Reply {
            status: 500,
            whole: false,
            ..reply(false)
        };
        assert!(matches!(
            classify(cut_refusal, now),
            Err(SendError::Unavailable(_))
        ));
    }

    #[test]
    fn a_code_about_the_message_fails_it_without_a_bounce_or_a_breaker_failure() {
        for code in MESSAGE_CODES {
            let err = answer(400, &format!(r#"{{"code": {code}}}"#)).unwrap_err();
            assert!(matches!(err, SendError::Refused(_)), "{code}: {err:?}");
        }
    }

    #[test]
    fn a_2xx_without_the_expected_json_is_unavailable() {
        for body in [
            "<html>welcome to the hotel wifi</html>",
            "{}",
            r#"{"sid": ""}"#,
        ] {
            let err = answer(200, body).unwrap_err();
            assert!(matches!(err, SendError::Unavailable(_)), "{body}: {err:?}");
        }
    }

    #[test]
    fn a_bad_number_is_rejected_with_the_providers_message_and_code() {
        assert_eq!(
            answer(400, TWILIO_400),
            Err(SendError::Rejected(
                "HTTP 400 Bad Request: The 'To' number is not a valid phone number. \
                 (provider code 21211)"
                    .into()
            ))
        );
    }

    #[test]
    fn a_recipient_who_replied_stop_has_opted_out_rather_than_bounced() {
        for status in [400, 422] {
            let body = r#"{"code": 21610, "message": "Attempt to send to unsubscribed recipient"}"#;
            assert_eq!(
                answer(status, body),
                Err(SendError::OptedOut(format!(
                    "HTTP {status} {}: Attempt to send to unsubscribed recipient \
                     (provider code 21610)",
                    reqwest::StatusCode::from_u16(status)
                        .unwrap()
                        .canonical_reason()
                        .unwrap()
                )))
            );
        }
        assert!(matches!(
            answer(400, r#"{"code": "21610"}"#),
            Err(SendError::OptedOut(_))
        ));
    }

    #[test]
    fn every_code_about_the_number_is_rejected_by_400_and_422() {
        for status in [400, 422] {
            for code in RECIPIENT_CODES {
                let err = answer(status, &format!(r#"{{"code": {code}}}"#)).unwrap_err();
                assert!(
                    matches!(err, SendError::Rejected(_)),
                    "{status} {code}: {err:?}"
                );
            }
            let as_text = answer(status, r#"{"code": "21614"}"#).unwrap_err();
            assert!(matches!(as_text, SendError::Rejected(_)), "{as_text:?}");
        }
    }

    #[test]
    fn a_400_about_our_request_or_without_a_code_never_bounces() {
        // 21408: the region is not enabled for the account; 21606: the `From` is not ours;
        // 21604: a field is missing — each would bounce the whole guest list.
        for body in [
            r#"{"code": 21408, "message": "Permission to send an SMS has not been enabled"}"#,
            r#"{"code": 21606, "message": "The From phone number is not a valid"}"#,
            r#"{"code": 21604, "message": "A 'To' phone number is required."}"#,
            "<html>Bad Request</html>",
            "",
        ] {
            let err = answer(400, body).unwrap_err();
            assert!(matches!(err, SendError::Unavailable(_)), "{body}: {err:?}");
        }
    }

    #[test]
    fn a_404_is_a_set_up_error_not_a_bounce() {
        let err = answer(
            404,
            r#"{"code": 20404, "message": "The requested resource was not found"}"#,
        )
        .unwrap_err();
        assert!(matches!(err, SendError::Unavailable(_)), "{err:?}");
        assert!(err.to_string().contains("check the provider URL"), "{err}");
    }

    #[test]
    fn a_429_is_deferred_for_its_retry_after_seconds() {
        let err = answer_after(
            429,
            Some("7"),
            r#"{"code": 20429, "message": "Too Many Requests"}"#,
        );
        assert_eq!(
            err,
            Err(SendError::Deferred {
                reason: "HTTP 429 Too Many Requests: Too Many Requests (provider code 20429)"
                    .into(),
                retry_after: Some(Duration::from_secs(7)),
            })
        );
    }

    #[test]
    fn a_429_retry_after_may_be_an_http_date() {
        let err = answer_after(429, Some("Sat, 06 Jun 2026 12:01:30 GMT"), "").unwrap_err();
        let SendError::Deferred { retry_after, .. } = err else {
            panic!("{err:?}");
        };
        assert_eq!(retry_after, Some(Duration::from_secs(90)));
    }

    #[test]
    fn a_429_retry_after_in_the_past_or_unreadable_says_now_or_nothing() {
        let past = answer_after(429, Some("Sat, 06 Jun 2026 11:00:00 GMT"), "").unwrap_err();
        assert!(matches!(past, SendError::Deferred { retry_after: Some(d), .. } if d.is_zero()));
        let unreadable = answer_after(429, Some("soon"), "").unwrap_err();
        assert!(matches!(
            unreadable,
            SendError::Deferred {
                retry_after: None,
                ..
            }
        ));
    }

    #[test]
    fn our_credentials_refused_are_unavailable_not_rejected() {
        for status in [401, 403] {
            let err = answer(status, r#"{"code": 20003, "message": "Authenticate"}"#).unwrap_err();
            assert!(
                matches!(err, SendError::Unavailable(_)),
                "{status}: {err:?}"
            );
            assert!(err.to_string().contains("credentials"), "{err}");
        }
    }

    #[test]
    fn server_errors_redirects_and_other_4xx_are_unavailable() {
        for status in [500, 502, 503, 301, 405, 408, 410, 413] {
            let err = answer(status, "<html>oops</html>").unwrap_err();
            assert!(
                matches!(err, SendError::Unavailable(_)),
                "{status}: {err:?}"
            );
            assert!(err.to_string().contains(&format!("HTTP {status}")), "{err}");
        }
    }

    #[test]
    fn a_provider_message_is_kept_to_one_short_line() {
        let long = format!(
            r#"{{"code": 21211, "message": "line one\nline two {}"}}"#,
            "x".repeat(500)
        );
        let Err(SendError::Rejected(reason)) = answer(400, &long) else {
            panic!("not rejected");
        };
        assert!(!reason.contains('\n'), "{reason}");
        assert!(reason.len() < 260, "{} characters", reason.len());
    }
}
