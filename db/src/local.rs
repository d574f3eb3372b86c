//! Placeholder until the embedded-default module lands.
use anyhow::Result;

/// URL of a database on the local server where databases may be created.
pub async fn admin_url() -> Result<String> {
    Ok(std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned()))
}
