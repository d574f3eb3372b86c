//! How a provider's answer is classified (SPEC §5.1), for every transport alike.
//!
//! The class decides both what happens to the delivery and whether the provider itself is in
//! trouble (the circuit breaker counts only [`SendError::Unavailable`]):
//!
//! | class | examples | delivery | breaker |
//! | --- | --- | --- | --- |
//! | `Rejected` | SMTP 5xx to RCPT blaming the address (5.1.x but 5.1.0/5.1.7/5.1.8, 5.2.1, 5.4.4; a bare 550/551/553); SMS HTTP 400/404/410/422 about the number | `bounced` + a `hard_bounce` suppression | a success: the provider answered |
//! | `OptedOut` | SMS HTTP 400/422 with Twilio's 21610: the guest replied STOP to our number | `suppressed` + a global `unsubscribed` SMS suppression (`messages::sms_webhook`) | a success |
//! | `Refused` | SMTP 5xx to DATA or after the content (552 too big, 554 policy); to RCPT for another reason (552 5.2.2 mailbox full, the unspecific 5.1.0) | `failed`, nothing suppressed: not known to be the address's fault | a success |
//! | `Deferred` | SMTP 4xx on the recipient (450 mailbox busy); SMS HTTP 429 | back to `queued`, retried with backoff | a success |
//! | `Unavailable` | connection refused or dropped, timeouts, SMTP 421, SMTP 5xx to MAIL (our sender refused: a set-up error), SMTP 5.7.x, 5.1.7, 5.1.8 or Postfix's "Sender address rejected" to RCPT (relaying denied, our IP blocklisted, our sender refused), HTTP 5xx, HTTP 401/403 (our credentials) | back to `queued`, retried (or sent through the secondary) | a failure |

use std::time::Duration;

/// A failed send, classified. Messages never carry credentials.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The provider refused this recipient for good.
    #[error("rejected: {0}")]
    Rejected(String),
    /// The recipient opted out of texts from our number at the provider (replied STOP), which
    /// refuses every text to them until they reply START.
    #[error("opted out: {0}")]
    OptedOut(String),
    /// The provider refused this message for good, but not for its address (an SMTP 5xx after
    /// the recipients were accepted): retrying would get the same answer, and suppressing the
    /// address could be wrong.
    #[error("refused: {0}")]
    Refused(String),
    /// The provider works but asks to try this recipient later (`retry_after` when it said when).
    #[error("deferred: {reason}")]
    Deferred {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// The provider could not be reached or is failing: nothing about the recipient is known.
    #[error("provider unavailable: {0}")]
    Unavailable(String),
}

impl SendError {
    /// Whether this answer counts against the provider's circuit breaker.
    pub fn is_provider_failure(&self) -> bool {
        matches!(self, SendError::Unavailable(_))
    }
}

/// One text message as an SMS provider receives it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SmsMessage {
    /// E.164, e.g. `+447700900123` (already normalised).
    pub to: String,
    /// The sender id or number the provider shows (`WEDSYNC_SMS_FROM`).
    pub from: String,
    pub body: String,
    /// Sent as the `Idempotency-Key` header (the delivery id), so a provider that honours it
    /// drops the duplicate of a message re-sent after a crash.
    pub idempotency_key: Option<String>,
    /// Sent as `StatusCallback`: where the provider posts the text's delivery receipts
    /// (`messages::sms_webhook`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_callback: Option<String>,
}
