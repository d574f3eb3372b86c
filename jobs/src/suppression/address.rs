//! Addresses as the suppression list compares them: normalised, then hashed.
//!
//! Normalisation (SPEC §5.1):
//! - email: trimmed and lower-cased (the whole address: providers treat the local part
//!   case-insensitively in practice, and a suppression that misses on case is worse than one
//!   that over-matches). One `@`, a non-empty local part, a dotted domain, no whitespace, quotes,
//!   angle brackets, commas or control characters; at most 254 characters.
//! - phone: E.164 by a strict rule rather than a numbering-plan library: spaces, dashes, dots and
//!   parentheses are removed, then it must be `+` followed by 8 to 15 digits, the first not 0.
//!   National formats (`07700 900123`) are refused, not guessed: the caller knows the country.
//!
//! The hash is SHA-256 (hex) of `<channel>:<normalised address>`. It is not keyed: a send must
//! find the entry from the address alone in every process, and a key rotation would silently
//! empty the list. Someone holding the database and a candidate address can therefore confirm
//! that it is suppressed — which is what a suppression list is for — but cannot read it back.

use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;

/// Longest email address accepted (RFC 5321 path limit).
pub const MAX_EMAIL_LEN: usize = 254;

/// How a message reaches a guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Email,
    Sms,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Sms => "sms",
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Channel {
    type Err = AddressError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "email" => Ok(Channel::Email),
            "sms" => Ok(Channel::Sms),
            other => Err(AddressError::UnknownChannel(other.to_owned())),
        }
    }
}

/// Why an address (or channel) was refused. The messages never repeat the address itself, so
/// they are safe to log and to return.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AddressError {
    #[error("unknown channel `{0}` (expected email or sms)")]
    UnknownChannel(String),
    #[error("is not a valid email address: {0}")]
    InvalidEmail(&'static str),
    #[error("is not a valid E.164 phone number (`+` then 8 to 15 digits, e.g. +447700900123): {0}")]
    InvalidPhone(&'static str),
}

/// A validated, normalised address on a channel.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Address {
    channel: Channel,
    normalised: String,
}

impl Address {
    /// Normalise `raw` for `channel`.
    pub fn parse(channel: Channel, raw: &str) -> Result<Address, AddressError> {
        let normalised = match channel {
            Channel::Email => normalise_email(raw)?,
            Channel::Sms => normalise_phone(raw)?,
        };
        Ok(Address {
            channel,
            normalised,
        })
    }

    pub fn channel(&self) -> Channel {
        self.channel
    }

    /// The normalised address (personal data: do not log it).
    pub fn as_str(&self) -> &str {
        &self.normalised
    }

    /// The hash stored in `suppressions.address_hash`.
    pub fn hash(&self) -> String {
        let mut hasher = Sha256::new();
        hasher.update(self.channel.as_str());
        hasher.update(b":");
        hasher.update(&self.normalised);
        hex::encode(hasher.finalize())
    }
}

/// Never prints the address: an `Address` in a log line or panic message shows only its channel.
impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Address({}, <redacted>)", self.channel)
    }
}

/// Trim, lower-case and check an email address.
pub fn normalise_email(raw: &str) -> Result<String, AddressError> {
    let email = raw.trim().to_lowercase();
    let invalid = AddressError::InvalidEmail;
    if email.is_empty() {
        return Err(invalid("it is empty"));
    }
    if email.len() > MAX_EMAIL_LEN {
        return Err(invalid("it is longer than 254 characters"));
    }
    if email
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || "\"\\<>,;()[]".contains(c))
    {
        return Err(invalid(
            "it contains whitespace, a quote, a bracket, a comma or a control character",
        ));
    }
    let Some((local, domain)) = email.split_once('@') else {
        return Err(invalid("it has no `@`"));
    };
    if domain.contains('@') {
        return Err(invalid("it has more than one `@`"));
    }
    if local.is_empty() {
        return Err(invalid("nothing before the `@`"));
    }
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() < 2 || labels.iter().any(|l| l.is_empty()) {
        return Err(invalid("the domain must be dotted, like example.com"));
    }
    // What the message builder will take at send time (a dot-atom local part of at most 64
    // characters, a valid domain): an address it refuses would be accepted here and fail later.
    if email.parse::<lettre::Address>().is_err() {
        return Err(invalid(
            "it is not an address mail can be sent to (e.g. a dot at the start or end of the \
             local part, two dots in a row, a local part over 64 characters)",
        ));
    }
    Ok(email)
}

/// Strip separators and check for E.164 (`+` and 8 to 15 digits, the first not 0, and no 0
/// right after the country code but where national numbers start with one). A `(0)` is
/// the written convention for a trunk prefix dialled only from within the country (`+44 (0)20
/// 7946 0958`), so it is dropped: kept, the number would be another one than the same number
/// written without it, and a suppression of one would miss the other. Where national numbers
/// start with 0 ([`NATIONAL_ZERO`]: `+39 (0)6 6988 3145`) that 0 is part of the number, and
/// kept.
pub fn normalise_phone(raw: &str) -> Result<String, AddressError> {
    let invalid = AddressError::InvalidPhone;
    let compact_of = |text: String| -> String {
        text.trim()
            .chars()
            .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'))
            .collect()
    };
    let zero_kept = compact_of(raw.replace("(0)", "0"));
    let keeps_zero = zero_kept.strip_prefix('+').is_some_and(|digits| {
        digits.len() > 3
            && digits.bytes().all(|b| b.is_ascii_digit())
            && NATIONAL_ZERO.contains(&&digits[..country_code_len(digits)])
    });
    let compact = if keeps_zero {
        zero_kept
    } else {
        compact_of(raw.replace("(0)", ""))
    };
    let Some(digits) = compact.strip_prefix('+') else {
        return Err(invalid("it must start with + and the country code"));
    };
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid("only digits may follow the +"));
    }
    if !(8..=15).contains(&digits.len()) {
        return Err(invalid("it must have 8 to 15 digits"));
    }
    if digits.starts_with('0') {
        return Err(invalid("a country code never starts with 0"));
    }
    let code = &digits[..country_code_len(digits)];
    if digits[code.len()..].starts_with('0') && !NATIONAL_ZERO.contains(&code) {
        // `+44 07700 900123`: the trunk prefix, dialled only within the country. Dropping it
        // would need every country's rules; kept, the number would not match the same number
        // written without it (a suppression, a provider's receipt or a STOP reply).
        return Err(invalid(
            "the 0 after the country code is dialled only within the country: leave it out \
             (+44 7700 900123, not +44 07700 900123)",
        ));
    }
    Ok(compact)
}

/// Country calling codes whose national numbers may start with 0: Italy, Côte d'Ivoire,
/// Benin (all numbers since November 2024: `+229 01 …`), Gabon, the Republic of the Congo,
/// San Marino, Vatican City.
const NATIONAL_ZERO: [&str; 7] = ["39", "225", "229", "241", "242", "378", "379"];

/// How many of `digits`' leading digits are its country calling code (ITU-T E.164: codes are
/// prefix-free; 1 and 7 are one digit, these two-digit ones are listed, every other is three).
fn country_code_len(digits: &str) -> usize {
    const TWO_DIGITS: [&str; 44] = [
        "20", "27", "30", "31", "32", "33", "34", "36", "39", "40", "41", "43", "44", "45", "46",
        "47", "48", "49", "51", "52", "53", "54", "55", "56", "57", "58", "60", "61", "62", "63",
        "64", "65", "66", "81", "82", "84", "86", "90", "91", "92", "93", "94", "95", "98",
    ];
    if digits.starts_with(['1', '7']) {
        1
    } else if TWO_DIGITS.contains(&&digits[..2]) {
        2
    } else {
        3
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_trimmed_and_lower_cased() {
        assert_eq!(
            normalise_email("  Guest.Name+Tag@Example.CO.uk \n").unwrap(),
            "guest.name+tag@example.co.uk"
        );
    }

    #[test]
    fn malformed_emails_are_refused() {
        for bad in [
            "",
            "   ",
            "guest",
            "@example.com",
            "guest@",
            "guest@localhost",
            "guest@example..com",
            "a@b@example.com",
            "guest name@example.com",
            "\"guest\"@example.com",
            "<guest@example.com>",
            "a@example.com,b@example.com",
        ] {
            assert!(normalise_email(bad).is_err(), "accepted {bad:?}");
        }
        let long = format!("{}@example.com", "a".repeat(250));
        assert!(normalise_email(&long).is_err());
        // Refused by the message builder at send time, so refused here too.
        let long_local = format!("{}@example.com", "a".repeat(65));
        for unsendable in [
            "ann.@example.com",
            ".ann@example.com",
            "a..b@example.com",
            "a:b@example.com",
            long_local.as_str(),
        ] {
            assert!(
                normalise_email(unsendable).is_err(),
                "accepted {unsendable:?}"
            );
        }
        assert!(normalise_email("o'brien+rsvp@example.com").is_ok());
    }

    #[test]
    fn phones_in_common_international_formats_become_e164() {
        for raw in [
            "+447700900123",
            " +44 7700 900123 ",
            "+44 7700-900.123",
            "+44-7700-900-123",
            "+44 (7700) 900 123",
            "+44 (0)7700 900123",
            "+44(0)7700900123",
        ] {
            assert_eq!(normalise_phone(raw).unwrap(), "+447700900123", "{raw:?}");
        }
        assert_eq!(
            normalise_phone("+1 (415) 555-0100").unwrap(),
            "+14155550100"
        );
    }

    #[test]
    fn phones_that_are_not_e164_are_refused() {
        for bad in [
            "",
            "07700 900123",
            "(0)7700 900123",
            "447700900123",
            "+44 7700 9001x3",
            "+0447700900123",
            "+1234567",
            "+1234567890123456",
            "++447700900123",
            "+44 07700 900123",
            "+33 06 12 34 56 78",
            "+1 0415 555 0100",
            "+353 087 123 4567",
        ] {
            assert!(normalise_phone(bad).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn a_zero_after_the_country_code_is_kept_where_national_numbers_start_with_it() {
        assert_eq!(
            normalise_phone("+39 06 6988 3145").unwrap(),
            "+390669883145"
        );
        assert_eq!(
            normalise_phone("+225 07 12 34 56 78").unwrap(),
            "+2250712345678"
        );
        assert_eq!(
            normalise_phone("+229 01 97 12 34 56").unwrap(),
            "+2290197123456"
        );
        // A three-digit code whose numbers do not start with 0 (Ireland): its own digits.
        assert_eq!(
            normalise_phone("+353 87 123 4567").unwrap(),
            "+353871234567"
        );
        assert_eq!(
            normalise_phone("+44 (0)7700 900123").unwrap(),
            "+447700900123"
        );
        // Where the 0 belongs to the number, `(0)` is that 0: one number, however written.
        for written in ["+39 (0)6 6988 3145", "+39 06 6988 3145"] {
            assert_eq!(
                normalise_phone(written).unwrap(),
                "+390669883145",
                "{written}"
            );
        }
        assert_eq!(
            normalise_phone("+225 (0)7 12 34 56 78").unwrap(),
            "+2250712345678"
        );
    }

    #[test]
    fn the_hash_is_of_the_normalised_address_and_its_channel() {
        let a = Address::parse(Channel::Email, " Guest@Example.com").unwrap();
        let b = Address::parse(Channel::Email, "guest@example.com").unwrap();
        assert_eq!(a.hash(), b.hash());
        assert_eq!(a.hash().len(), 64);
        let other = Address::parse(Channel::Email, "guest2@example.com").unwrap();
        assert_ne!(a.hash(), other.hash());
        // printf 'email:guest@example.com' | sha256sum
        assert_eq!(
            a.hash(),
            "86f61e3fd26d1bc85a3cf3ddbdc03c95fe1f93acc3ecd5a35a1281a56276b0b0"
        );
    }

    #[test]
    fn debug_output_hides_the_address() {
        let a = Address::parse(Channel::Email, "guest@example.com").unwrap();
        assert!(!format!("{a:?}").contains("guest"));
    }

    #[test]
    fn channels_parse_and_unknown_ones_are_named() {
        assert_eq!("sms".parse::<Channel>().unwrap(), Channel::Sms);
        let err = "fax".parse::<Channel>().unwrap_err().to_string();
        assert!(err.contains("fax"), "{err}");
    }
}
