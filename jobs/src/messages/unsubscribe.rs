//! One-click unsubscribe (RFC 8058): signed, self-contained tokens for the links in marketing
//! mail, and what following one does.
//!
//! A token carries everything needed to act on it, so it keeps working after its delivery row
//! was erased or pruned by retention. Version 1, URL-safe base64 without padding:
//!
//! ```text
//! 0x01 | channel (1 byte: 1 email, 2 sms) | delivery id (i64, big-endian)
//!      | address hash (32 bytes) | organisation id (UTF-8, the rest) | HMAC-SHA256 (32 bytes)
//! ```
//!
//! The MAC covers a context string and every byte before it, and is checked in constant time
//! before any field is read. Tokens do not expire (an unsubscribe link must keep working long
//! after the mail was sent); changing the key invalidates every link already sent.

use crate::suppression::{Channel, Reason, SuppressionList};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;

/// The shortest secret [`SigningKey::new`] accepts, in bytes.
pub const MIN_KEY_BYTES: usize = 32;
/// Name of the key in table `signing_keys`.
const KEY_NAME: &str = "unsubscribe";
/// Domain separation: a key given for unsubscribe links signs nothing else by accident.
const CONTEXT: &[u8] = b"wedsync.unsubscribe\0";
const VERSION: u8 = 1;
const HASH_BYTES: usize = 32;
const TAG_BYTES: usize = 32;
/// Between the public URL and the token in an unsubscribe link.
pub const LINK_PATH: &str = "/unsubscribe?token=";
/// Version, channel, delivery id and hash: the fixed part before the organisation.
const HEADER_BYTES: usize = 1 + 1 + 8 + HASH_BYTES;
/// Longer tokens are refused before decoding (organisation ids are far shorter).
const MAX_TOKEN_CHARS: usize = 1024;

/// HMAC-SHA256 key of unsubscribe tokens. Cheap to clone; Debug shows nothing secret.
#[derive(Clone)]
pub struct SigningKey {
    mac: Hmac<Sha256>,
}

/// A secret shorter than [`MIN_KEY_BYTES`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a signing key needs at least {MIN_KEY_BYTES} bytes; this one has {0}")]
pub struct KeyTooShort(pub usize);

/// Why a token was refused. Say none of it to the guest: every case is "an invalid link".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    #[error("the token is not a well-formed unsubscribe token")]
    Malformed,
    #[error("the token has the unknown version {0}")]
    UnknownVersion(u8),
    #[error("the token's signature does not match")]
    BadSignature,
}

/// Whom a token unsubscribes, from whose messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsubscribeClaim {
    pub delivery_id: i64,
    pub org_id: String,
    pub channel: Channel,
    /// 64 lower-case hex characters, as `deliveries.address_hash`.
    pub address_hash: String,
}

impl SigningKey {
    pub fn new(secret: &[u8]) -> Result<SigningKey, KeyTooShort> {
        if secret.len() < MIN_KEY_BYTES {
            return Err(KeyTooShort(secret.len()));
        }
        let mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
        Ok(SigningKey { mac })
    }

    /// A fresh random key (tests, and `MessagesContext::default`).
    pub fn random() -> SigningKey {
        SigningKey::new(&rand::random::<[u8; MIN_KEY_BYTES]>()).expect("long enough")
    }

    /// The key named "unsubscribe" in table `signing_keys` (migration 0011), created at random on
    /// first use so every process sharing the database signs and verifies alike (the embedded
    /// default, used when WEDSYNC_SIGNING_KEY is unset). Safe when several processes race to
    /// create it: the insert of all but one does nothing, and each reads the one stored.
    pub async fn load_or_create(pool: &sqlx::PgPool) -> Result<SigningKey, sqlx::Error> {
        let stored = match stored_secret(pool).await? {
            Some(secret) => secret,
            None => {
                sqlx::query(
                    "INSERT INTO signing_keys (name, secret) VALUES ($1, $2) \
                     ON CONFLICT (name) DO NOTHING",
                )
                .bind(KEY_NAME)
                .bind(rand::random::<[u8; MIN_KEY_BYTES]>().to_vec())
                .execute(pool)
                .await?;
                // A new statement, so a key another process committed meanwhile is seen.
                stored_secret(pool).await?.ok_or(sqlx::Error::RowNotFound)?
            }
        };
        SigningKey::new(&stored).map_err(|err| sqlx::Error::Decode(err.into()))
    }

    /// The length of the unsubscribe link of any delivery of `org_id`'s sends, as compose
    /// builds it (`<public_url>/unsubscribe?token=<token>`): the token's length depends only on
    /// the organisation id's.
    pub fn link_len(public_url: &str, org_id: &str) -> usize {
        let token = base64::encoded_len(HEADER_BYTES + org_id.len() + TAG_BYTES, false)
            .unwrap_or(usize::MAX / 2);
        public_url.len() + LINK_PATH.len() + token
    }

    /// The token of `claim`: URL-safe base64 without padding, 99 characters plus 4/3 of the
    /// organisation id's length (116 for `acme-weddings`).
    ///
    /// # Panics
    /// If `claim.address_hash` is not 64 hex digits (it comes from `deliveries.address_hash`).
    pub fn sign(&self, claim: &UnsubscribeClaim) -> String {
        let hash = hex::decode(&claim.address_hash)
            .ok()
            .filter(|h| h.len() == HASH_BYTES)
            .expect("an address hash is 64 hex digits");
        let mut bytes = Vec::with_capacity(HEADER_BYTES + claim.org_id.len() + TAG_BYTES);
        bytes.push(VERSION);
        bytes.push(channel_byte(claim.channel));
        bytes.extend_from_slice(&claim.delivery_id.to_be_bytes());
        bytes.extend_from_slice(&hash);
        bytes.extend_from_slice(claim.org_id.as_bytes());
        let tag = self.keyed(&bytes).finalize().into_bytes();
        bytes.extend_from_slice(&tag);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// The claim of a token this key signed; the MAC is checked in constant time before any
    /// field is read.
    pub fn verify(&self, token: &str) -> Result<UnsubscribeClaim, TokenError> {
        if token.len() > MAX_TOKEN_CHARS {
            return Err(TokenError::Malformed);
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| TokenError::Malformed)?;
        if bytes.len() < HEADER_BYTES + TAG_BYTES {
            return Err(TokenError::Malformed);
        }
        if bytes[0] != VERSION {
            return Err(TokenError::UnknownVersion(bytes[0]));
        }
        let (signed, tag) = bytes.split_at(bytes.len() - TAG_BYTES);
        self.keyed(signed)
            .verify_slice(tag)
            .map_err(|_| TokenError::BadSignature)?;
        let channel = match signed[1] {
            1 => Channel::Email,
            2 => Channel::Sms,
            _ => return Err(TokenError::Malformed),
        };
        let delivery_id = i64::from_be_bytes(signed[2..10].try_into().expect("8 bytes"));
        let org_id = std::str::from_utf8(&signed[HEADER_BYTES..])
            .map_err(|_| TokenError::Malformed)?
            .to_owned();
        Ok(UnsubscribeClaim {
            delivery_id,
            org_id,
            channel,
            address_hash: hex::encode(&signed[10..HEADER_BYTES]),
        })
    }

    /// The MAC state with the context and `signed` fed in.
    fn keyed(&self, signed: &[u8]) -> Hmac<Sha256> {
        let mut mac = self.mac.clone();
        mac.update(CONTEXT);
        mac.update(signed);
        mac
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(<redacted>)")
    }
}

fn channel_byte(channel: Channel) -> u8 {
    match channel {
        Channel::Email => 1,
        Channel::Sms => 2,
    }
}

async fn stored_secret(pool: &sqlx::PgPool) -> Result<Option<Vec<u8>>, sqlx::Error> {
    sqlx::query_scalar("SELECT secret FROM signing_keys WHERE name = $1")
        .bind(KEY_NAME)
        .fetch_optional(pool)
        .await
}

/// Put the claim's address on its organisation's suppression list (reason `unsubscribed`).
/// Idempotent. The readable address comes from the delivery row when it still exists with that
/// hash; otherwise (erased, pruned) the entry is stored by hash alone. Returns whether a new
/// entry was created.
pub async fn unsubscribe(
    pool: &sqlx::PgPool,
    claim: &UnsubscribeClaim,
) -> Result<bool, sqlx::Error> {
    let readable: Option<String> = sqlx::query_scalar(
        "SELECT d.address FROM deliveries d JOIN bulk_sends b ON b.id = d.send_id \
          WHERE d.id = $1 AND d.address_hash = $2 AND b.org_id = $3 AND b.channel = $4",
    )
    .bind(claim.delivery_id)
    .bind(&claim.address_hash)
    .bind(&claim.org_id)
    .bind(claim.channel.as_str())
    .fetch_optional(pool)
    .await?;
    let added = SuppressionList::new(pool.clone())
        .add_hash(
            Some(&claim.org_id),
            claim.channel,
            &claim.address_hash,
            readable.as_deref(),
            Reason::Unsubscribed,
        )
        .await?;
    Ok(added.created)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim() -> UnsubscribeClaim {
        UnsubscribeClaim {
            delivery_id: 4_200_000_017,
            org_id: "acme-weddings".to_owned(),
            channel: Channel::Email,
            // printf 'email:guest@example.com' | sha256sum
            address_hash: "86f61e3fd26d1bc85a3cf3ddbdc03c95fe1f93acc3ecd5a35a1281a56276b0b0"
                .to_owned(),
        }
    }

    #[test]
    fn a_signed_claim_verifies_to_itself() {
        let key = SigningKey::random();
        for channel in [Channel::Email, Channel::Sms] {
            let claim = UnsubscribeClaim { channel, ..claim() };
            assert_eq!(key.verify(&key.sign(&claim)), Ok(claim));
        }
    }

    #[test]
    fn the_link_length_is_known_from_the_organisation_alone() {
        let key = SigningKey::random();
        let public = "https://jobs.wedsync.test";
        for org_id in ["a", "acme-weddings", &"o".repeat(255)] {
            for delivery_id in [1, i64::MAX] {
                let claim = UnsubscribeClaim {
                    delivery_id,
                    org_id: org_id.to_owned(),
                    ..claim()
                };
                let link = format!("{public}{LINK_PATH}{}", key.sign(&claim));
                assert_eq!(SigningKey::link_len(public, org_id), link.len(), "{org_id}");
            }
        }
    }

    #[test]
    fn tokens_are_url_safe_unpadded_and_short() {
        let token = SigningKey::random().sign(&claim());
        assert!(
            token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "{token}"
        );
        assert!(token.len() <= 120, "{} characters", token.len());
    }

    #[test]
    fn a_token_with_any_character_changed_is_refused() {
        let key = SigningKey::random();
        let token = key.sign(&claim());
        for (i, original) in token.char_indices() {
            let replacement = if original == 'A' { 'B' } else { 'A' };
            let mut tampered = token.clone();
            tampered.replace_range(i..i + 1, &replacement.to_string());
            assert!(key.verify(&tampered).is_err(), "accepted a change at {i}");
        }
    }

    #[test]
    fn a_token_with_any_decoded_bit_flipped_is_refused() {
        let key = SigningKey::random();
        let bytes = URL_SAFE_NO_PAD.decode(key.sign(&claim())).unwrap();
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut flipped = bytes.clone();
                flipped[i] ^= 1 << bit;
                let token = URL_SAFE_NO_PAD.encode(&flipped);
                assert!(key.verify(&token).is_err(), "accepted byte {i} bit {bit}");
            }
        }
    }

    #[test]
    fn a_truncated_or_extended_token_is_refused() {
        let key = SigningKey::random();
        let token = key.sign(&claim());
        for len in 0..token.len() {
            assert!(key.verify(&token[..len]).is_err(), "accepted {len} chars");
        }
        assert!(key.verify(&format!("{token}A")).is_err());
    }

    #[test]
    fn a_token_of_another_key_is_refused() {
        let token = SigningKey::random().sign(&claim());
        assert_eq!(
            SigningKey::random().verify(&token),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn garbage_and_empty_tokens_are_refused() {
        let key = SigningKey::random();
        for garbage in [
            "",
            "not a token",
            "====",
            "%00",
            &"A".repeat(100),
            &"A".repeat(5000),
        ] {
            assert!(key.verify(garbage).is_err(), "accepted {garbage:?}");
        }
    }

    #[test]
    fn the_same_secret_makes_the_same_key() {
        let secret = [7u8; 40];
        let token = SigningKey::new(&secret).unwrap().sign(&claim());
        assert_eq!(
            SigningKey::new(&secret).unwrap().verify(&token),
            Ok(claim())
        );
    }

    #[test]
    fn secrets_under_32_bytes_are_refused() {
        assert_eq!(SigningKey::new(&[1; 31]).unwrap_err(), KeyTooShort(31));
    }

    #[test]
    fn debug_output_hides_the_key() {
        assert_eq!(
            format!("{:?}", SigningKey::random()),
            "SigningKey(<redacted>)"
        );
    }
}
