//! Connecting to PostgreSQL: the configured `DATABASE_URL`, or the embedded default's local
//! server (found or started), then migrations.

use crate::Failure;
use crate::settings::Settings;
use anyhow::Context;
use secrecy::ExposeSecret;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use std::time::Duration;
use wedsync_db::local::LocalPgError;

/// The database URL to use: `DATABASE_URL`, else a local PostgreSQL (SPEC §1).
pub async fn database_url(settings: &Settings) -> Result<String, Failure> {
    if let Some(url) = &settings.database_url {
        return Ok(url.expose_secret().to_owned());
    }
    let data_dir = settings.data_dir.join("pg");
    wedsync_db::local::resolve_database_url("wedsync", &data_dir)
        .await
        .map_err(|err| match err {
            LocalPgError::NoBinaries | LocalPgError::NoPostgresUser => Failure::Usage(err.into()),
            other => {
                Failure::Runtime(anyhow::Error::new(other).context("starting the local PostgreSQL"))
            }
        })
}

/// Connect the process's main pool — at most `WEDSYNC_DB_POOL_SIZE` connections, else
/// `role_default` — and apply migrations when `migrate` is set.
pub async fn connect(
    settings: &Settings,
    role_default: u32,
    migrate: bool,
) -> Result<PgPool, Failure> {
    let url = database_url(settings).await?;
    let pool = PgPoolOptions::new()
        .max_connections(settings.db_pool_size.unwrap_or(role_default))
        .acquire_timeout(Duration::from_secs(10))
        .connect(&url)
        .await
        .context("connecting to PostgreSQL (DATABASE_URL)")?;
    if migrate {
        wedsync_db::MIGRATOR
            .run(&pool)
            .await
            .context("applying database migrations")?;
    }
    Ok(pool)
}

/// A second pool to the same database. Workers keep their queue bookkeeping (claims,
/// completions, heartbeats) on a pool of their own so that busy job handlers can never starve a
/// heartbeat into a false "worker dead".
pub fn sibling_pool(pool: &PgPool, max_connections: u32) -> PgPool {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(2))
        .connect_lazy_with((*pool.connect_options()).clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use wedsync_db::testing::TestDb;

    fn settings(db: &TestDb, pool_size: Option<&str>) -> Settings {
        Settings::from_env_and_file(
            |name| match name {
                "DATABASE_URL" => Some(db.url.clone()),
                "WEDSYNC_DB_POOL_SIZE" => pool_size.map(str::to_owned),
                _ => None,
            },
            None,
        )
        .unwrap()
    }

    #[tokio::test]
    async fn the_main_pool_has_the_configured_size_else_the_roles_default() {
        let db = TestDb::new().await.unwrap();
        let configured = connect(&settings(&db, Some("3")), 16, false).await.unwrap();
        assert_eq!(configured.options().get_max_connections(), 3);
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(configured.acquire().await.unwrap());
        }
        assert_eq!((configured.size(), configured.num_idle()), (3, 0));
        let default = connect(&settings(&db, None), 16, false).await.unwrap();
        assert_eq!(default.options().get_max_connections(), 16);
    }
}
