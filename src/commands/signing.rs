//! The HMAC key of unsubscribe tokens, chosen the same way by every role that signs links (the
//! workers) or verifies them (the API): `WEDSYNC_SIGNING_KEY` when set, else the key kept in the
//! database (created on first use), so every process sharing the database agrees.

use crate::Failure;
use crate::settings::Settings;
use anyhow::Context;
use secrecy::ExposeSecret;
use sqlx::PgPool;
use wedsync_kinds::messages::unsubscribe::SigningKey;

pub async fn unsubscribe_key(settings: &Settings, pool: &PgPool) -> Result<SigningKey, Failure> {
    match &settings.signing_key {
        Some(secret) => SigningKey::new(secret.expose_secret().as_bytes())
            .map_err(|err| Failure::Usage(anyhow::Error::new(err).context("WEDSYNC_SIGNING_KEY"))),
        None => Ok(SigningKey::load_or_create(pool)
            .await
            .context("loading the unsubscribe signing key from the database")?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wedsync_db::testing::TestDb;
    use wedsync_kinds::messages::unsubscribe::UnsubscribeClaim;
    use wedsync_kinds::suppression::Channel;

    const SECRET: &str = "0123456789abcdef0123456789abcdef0123456789abcdef";

    fn settings(signing_key: Option<&str>) -> Settings {
        Settings::from_env_and_file(
            |name| (name == "WEDSYNC_SIGNING_KEY").then(|| signing_key.map(str::to_owned))?,
            None,
        )
        .unwrap()
    }

    fn claim() -> UnsubscribeClaim {
        UnsubscribeClaim {
            delivery_id: 7,
            org_id: "acme".to_owned(),
            channel: Channel::Email,
            address_hash: "ab".repeat(32),
        }
    }

    #[tokio::test]
    async fn a_configured_key_is_used_instead_of_the_database_one() {
        let db = TestDb::new().await.unwrap();
        let key = unsubscribe_key(&settings(Some(SECRET)), &db.pool)
            .await
            .unwrap();
        let configured = SigningKey::new(SECRET.as_bytes()).unwrap();
        assert_eq!(key.verify(&configured.sign(&claim())), Ok(claim()));
        let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM signing_keys")
            .fetch_one(&db.pool)
            .await
            .unwrap();
        assert_eq!(stored, 0, "no key is created when one is configured");
    }

    #[tokio::test]
    async fn without_a_configured_key_the_database_one_is_used() {
        let db = TestDb::new().await.unwrap();
        let key = unsubscribe_key(&settings(None), &db.pool).await.unwrap();
        let stored = SigningKey::load_or_create(&db.pool).await.unwrap();
        assert_eq!(key.verify(&stored.sign(&claim())), Ok(claim()));
    }
}
