//! Why an address is on the suppression list.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The guest unsubscribed (one-click link or by hand).
    Unsubscribed,
    /// A permanent delivery failure.
    HardBounce,
    /// The guest marked a message as spam.
    Complaint,
    /// Added by an operator or planner.
    Manual,
    /// The guest was erased (GDPR); only the hash remains. Set by erasure, never by hand.
    Erased,
}

impl Reason {
    /// The reasons a caller may give when adding an entry (everything but `erased`).
    pub const ADDABLE: [Reason; 4] = [
        Reason::Unsubscribed,
        Reason::HardBounce,
        Reason::Complaint,
        Reason::Manual,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Unsubscribed => "unsubscribed",
            Reason::HardBounce => "hard_bounce",
            Reason::Complaint => "complaint",
            Reason::Manual => "manual",
            Reason::Erased => "erased",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A reason name that is not one of the five.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown reason `{0}` (expected unsubscribed, hard_bounce, complaint, manual or erased)")]
pub struct UnknownReason(pub String);

impl FromStr for Reason {
    type Err = UnknownReason;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Reason::Erased]
            .into_iter()
            .chain(Reason::ADDABLE)
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownReason(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_round_trip_through_strings() {
        for reason in [Reason::Erased].into_iter().chain(Reason::ADDABLE) {
            assert_eq!(reason.as_str().parse::<Reason>().unwrap(), reason);
        }
        assert!("bounced".parse::<Reason>().is_err());
    }
}
