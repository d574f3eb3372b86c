//! Operator commands over the database: migrate, keys, queues (pools: [`super::pools`]).

use crate::Failure;
use crate::cli::{JsonFlag, KeysCommand};
use crate::commands::output::print_rows;
use crate::settings::Settings;
use crate::startup;
use anyhow::Context;
use sqlx::PgPool;
use wedsync_api::Role;
use wedsync_api::keys;
use wedsync_queue::Queue;

pub async fn migrate(settings: Settings) -> Result<(), Failure> {
    startup::connect(&settings, 2, true).await?;
    println!("migrations applied");
    Ok(())
}

pub async fn keys(settings: Settings, command: KeysCommand) -> Result<(), Failure> {
    let KeysCommand::Create { org, role } = command;
    let role: Role = role
        .parse()
        .map_err(|e| Failure::Usage(anyhow::anyhow!("--role: {e}")))?;
    let pool = startup::connect(&settings, 2, true).await?;
    let key = keys::create_key(&pool, &org, role)
        .await
        .context("creating the API key")?;
    println!("{key}");
    Ok(())
}

pub async fn queues(settings: Settings, output: JsonFlag) -> Result<(), Failure> {
    let queue = Queue::new(startup::connect(&settings, 2, true).await?);
    let stats = queue
        .queue_stats()
        .await
        .context("reading queue statistics")?;
    let columns = [
        "queue",
        "available",
        "scheduled",
        "running",
        "retryable",
        "completed_last_minute",
        "discarded_last_minute",
        "lag_seconds",
        "concurrency",
        "paused",
    ];
    print_rows(&stats, &columns, output.json)?;
    Ok(())
}

/// The admin key printed by `all`: kept in the data directory and reused while it is valid.
pub async fn embedded_admin_key(pool: &PgPool, settings: &Settings) -> Result<String, Failure> {
    let path = settings.data_dir.join("admin-key");
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let existing = existing.trim().to_owned();
        if keys::is_active(pool, &existing)
            .await
            .context("checking the stored admin key")?
        {
            return Ok(existing);
        }
    }
    let key = keys::create_key(pool, "default", Role::Admin)
        .await
        .context("creating the admin key")?;
    std::fs::create_dir_all(&settings.data_dir)
        .with_context(|| format!("creating {}", settings.data_dir.display()))?;
    write_private(&path, &key).with_context(|| format!("writing {}", path.display()))?;
    Ok(key)
}

fn write_private(path: &std::path::Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents.as_bytes())
}
