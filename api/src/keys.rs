//! API keys: generated once, shown once, stored only as a SHA-256 hash.
//!
//! A key is `wsk_` followed by 40 base62 characters (about 238 bits from the thread-local CSPRNG),
//! so a fast unsalted hash is enough: there is nothing to brute-force, and a plain hash lets the
//! lookup be one indexed equality. The first 12 characters are kept in clear as `key_prefix` so
//! operators can tell keys apart in listings and logs without holding the secret.

use crate::auth::Role;
use rand::Rng;
use rand::distr::Alphanumeric;
use sha2::{Digest, Sha256};
use sqlx::PgPool;

/// Every key starts with this, so leaked keys are easy to spot by secret scanners.
pub const KEY_PREFIX: &str = "wsk_";
/// Random characters after [`KEY_PREFIX`].
pub const KEY_RANDOM_LEN: usize = 40;
/// Characters of the key kept in clear in `api_keys.key_prefix`.
pub const DISPLAY_PREFIX_LEN: usize = 12;

/// Create a key for `org` with `role` and return it; this is the only time it exists in clear.
pub async fn create_key(pool: &PgPool, org: &str, role: Role) -> Result<String, sqlx::Error> {
    let key = generate_key();
    sqlx::query(
        "INSERT INTO api_keys (org_id, role, key_hash, key_prefix) VALUES ($1, $2, $3, $4)",
    )
    .bind(org)
    .bind(role.as_str())
    .bind(hash_key(&key))
    .bind(&key[..DISPLAY_PREFIX_LEN])
    .execute(pool)
    .await?;
    Ok(key)
}

/// Revoke every live key whose clear prefix is `prefix`; returns how many were revoked.
pub async fn revoke_key(pool: &PgPool, prefix: &str) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE api_keys SET revoked_at = now() WHERE key_prefix = $1 AND revoked_at IS NULL",
    )
    .bind(prefix)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// A fresh key: `wsk_` + 40 characters of `[A-Za-z0-9]`.
pub fn generate_key() -> String {
    let random: String = rand::rng()
        .sample_iter(Alphanumeric)
        .take(KEY_RANDOM_LEN)
        .map(char::from)
        .collect();
    format!("{KEY_PREFIX}{random}")
}

/// Lower-case hex SHA-256 of the whole key, as stored in `api_keys.key_hash`.
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// True when `key` has the shape of a key we issue; anything else is rejected without a query.
pub fn looks_like_key(key: &str) -> bool {
    key.len() == KEY_PREFIX.len() + KEY_RANDOM_LEN
        && key.starts_with(KEY_PREFIX)
        && key[KEY_PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric())
}

/// Whether `key` belongs to an existing, unrevoked API key.
pub async fn is_active(pool: &PgPool, key: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL)",
    )
    .bind(hash_key(key))
    .fetch_one(pool)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_have_the_documented_shape() {
        let key = generate_key();
        assert!(looks_like_key(&key), "{key}");
        assert_ne!(key, generate_key());
    }

    #[test]
    fn hashes_are_sha256_hex() {
        assert_eq!(
            hash_key("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
