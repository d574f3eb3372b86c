//! Test and benchmark support: a fresh, migrated database per test on the local PostgreSQL.
//!
//! Used by the integration tests in `tests/` and by `wedsync-jobs bench`; it is public so they
//! can reach it, not part of the product's interface.

use anyhow::{Context, Result};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};
use std::str::FromStr;

/// A database created for one test (or one benchmark run) and dropped when it ends.
pub struct TestDb {
    pub name: String,
    /// Connection URL of this database.
    pub url: String,
    pub pool: PgPool,
    admin_url: String,
}

impl TestDb {
    /// Create `wedsync_test_<random>` on the local server (see [`crate::local::admin_url`]),
    /// apply all migrations and connect a pool to it.
    pub async fn new() -> Result<Self> {
        Self::named(&format!("wedsync_test_{}", uuid_simple())).await
    }

    /// Like [`TestDb::new`] with a chosen name; an existing database of that name is replaced.
    pub async fn named(name: &str) -> Result<Self> {
        Self::create(name, None).await
    }

    /// A fresh database with the migrations up to `version` only, for testing what a later
    /// migration does to data written before it (run the rest with `crate::MIGRATOR.run`).
    pub async fn migrated_to(version: i64) -> Result<Self> {
        Self::create(&format!("wedsync_test_{}", uuid_simple()), Some(version)).await
    }

    async fn create(name: &str, up_to: Option<i64>) -> Result<Self> {
        let admin_url = crate::local::admin_url().await?;
        let mut admin = PgConnection::connect(&admin_url)
            .await
            .with_context(|| "connecting to the local PostgreSQL as admin")?;
        for statement in [
            format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
            format!("CREATE DATABASE \"{name}\""),
        ] {
            sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
                .execute(&mut admin)
                .await
                .with_context(|| format!("creating database {name}"))?;
        }
        admin.close().await.ok();
        let options = PgConnectOptions::from_str(&admin_url)?.database(name);
        let url = options.to_url_lossy().to_string();
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .connect_with(options)
            .await?;
        match up_to {
            None => crate::MIGRATOR.run(&pool).await,
            Some(version) => crate::MIGRATOR.run_to(version, &pool).await,
        }
        .context("running migrations")?;
        Ok(TestDb {
            name: name.to_owned(),
            url,
            pool,
            admin_url,
        })
    }
}

impl Drop for TestDb {
    /// Drop the database before the test ends (joined, so a finishing test process cannot cut it
    /// short). It runs on a thread of its own because `drop` cannot await; `FORCE` ends the
    /// pool's connections, which belong to the test's runtime.
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        let dropper = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                if let Ok(mut admin) = PgConnection::connect(&admin_url).await {
                    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                    )))
                    .execute(&mut admin)
                    .await;
                }
            });
        });
        let _ = dropper.join();
    }
}

fn uuid_simple() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..12)
        .map(|_| char::from(b'a' + rng.random_range(0..26u8)))
        .collect()
}
