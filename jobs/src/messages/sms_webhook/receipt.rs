//! What a provider's delivery receipt (a status callback: `MessageStatus`, `ErrorCode`) means
//! for a text it had accepted.
//!
//! | status | error code | delivery (if `sent`) | suppression list (the send's organisation) |
//! | --- | --- | --- | --- |
//! | `undelivered`, `failed` | 30005 unknown or inactive number, 30006 landline or unreachable carrier, or a send-time code about the number (`providers::sms` `RECIPIENT_CODES`: 21211, 21614, …) | `bounced` | `hard_bounce` |
//! | `undelivered`, `failed` | 21610, the guest replied STOP (a provider that checks it after accepting the text) | `suppressed` | a **global** `unsubscribed` SMS entry, as at send time |
//! | `undelivered`, `failed` | any other, or none (30003 handset off, 30007 carrier filtering, …) | `failed` | — |
//! | anything else (`queued`, `sent`, `delivered`, `read`, …) | | — | — |
//!
//! Only codes that say the number itself cannot take texts suppress it, as at send time
//! (`providers/sms/classify.rs`): a handset that is off or a carrier's filter says nothing
//! lasting about the guest's number.

use crate::messages::providers::{OPTED_OUT_CODE, RECIPIENT_CODES};

/// Error codes of a failed receipt, besides the send-time [`RECIPIENT_CODES`], that put the
/// number on the suppression list.
pub const NUMBER_CODES: [u32; 2] = [30005, 30006];

/// What a receipt means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptVerdict {
    /// The number cannot take texts: `bounced` and suppressed.
    HardBounce,
    /// The guest replied STOP: `suppressed`, and a global opt-out as at send time.
    OptedOut,
    /// Not delivered, for a reason that is not known to be the number's.
    Failed,
    /// On its way, or delivered: nothing changes.
    NoChange,
}

impl ReceiptVerdict {
    pub fn of(status: &str, error_code: Option<u32>) -> ReceiptVerdict {
        match status.trim().to_ascii_lowercase().as_str() {
            "undelivered" | "failed" => match error_code.map(u64::from) {
                Some(OPTED_OUT_CODE) => ReceiptVerdict::OptedOut,
                Some(code)
                    if RECIPIENT_CODES.contains(&code)
                        || NUMBER_CODES.iter().any(|&n| u64::from(n) == code) =>
                {
                    ReceiptVerdict::HardBounce
                }
                _ => ReceiptVerdict::Failed,
            },
            _ => ReceiptVerdict::NoChange,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ReceiptVerdict::HardBounce => "hard_bounce",
            ReceiptVerdict::OptedOut => "opted_out",
            ReceiptVerdict::Failed => "failed",
            ReceiptVerdict::NoChange => "no_change",
        }
    }

    /// The status a `sent` delivery takes.
    pub(super) fn status(self) -> Option<&'static str> {
        match self {
            ReceiptVerdict::HardBounce => Some("bounced"),
            ReceiptVerdict::OptedOut => Some("suppressed"),
            ReceiptVerdict::Failed => Some("failed"),
            ReceiptVerdict::NoChange => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_failures_change_and_only_number_codes_bounce() {
        assert_eq!(
            ReceiptVerdict::of("undelivered", Some(30005)),
            ReceiptVerdict::HardBounce
        );
        assert_eq!(
            ReceiptVerdict::of("Failed", Some(30006)),
            ReceiptVerdict::HardBounce
        );
        assert_eq!(
            ReceiptVerdict::of("undelivered", Some(30003)),
            ReceiptVerdict::Failed
        );
        assert_eq!(ReceiptVerdict::of("failed", None), ReceiptVerdict::Failed);
        assert_eq!(
            ReceiptVerdict::of("failed", Some(21614)),
            ReceiptVerdict::HardBounce
        );
        assert_eq!(
            ReceiptVerdict::of("undelivered", Some(21610)),
            ReceiptVerdict::OptedOut
        );
        assert_eq!(
            ReceiptVerdict::of("failed", Some(21617)),
            ReceiptVerdict::Failed
        );
        for status in ["delivered", "sent", "queued", "read", ""] {
            assert_eq!(
                ReceiptVerdict::of(status, Some(30005)),
                ReceiptVerdict::NoChange
            );
        }
    }
}
