//! The local PostgreSQL of the embedded default (`wedsync-jobs all` without `DATABASE_URL`) and of
//! the tests: a server already running on this machine (the default socket, then
//! 127.0.0.1:5432), or else a private cluster initialised and started from the PostgreSQL
//! binaries installed here.
//!
//! A private cluster listens on a unix socket only (inside its data directory, or under `/tmp`
//! when that path would be too long for a socket), so it never clashes with a system server.
//! Its URL has the form `postgres:///DB?host=/socket/dir&port=5432&user=postgres`.
//! When running as root, `initdb` and `pg_ctl` run as the `postgres` user (PostgreSQL refuses
//! to run as root) and the data directory belongs to that user.

mod binaries;
mod cluster;
mod data_dir;
mod database;
mod error;
mod lock;
mod runner;
mod server;
mod socket_dir;
mod url;

pub use self::error::LocalPgError;
pub use self::url::with_database;

use self::cluster::{Durability, ensure_cluster};
use self::database::{check_database_name, create_database_if_missing};
use self::server::find_local_server;
use sqlx::postgres::PgConnectOptions;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use tokio::sync::OnceCell;

/// The superuser of every local server we use, and the name of the OS user that runs a private
/// cluster when we are root.
const SUPERUSER: &str = "postgres";
/// The port of a private cluster (on its own socket directory, so no clash with a system server).
pub const PRIVATE_PORT: u16 = 5432;

/// A URL of a database on a local server where `CREATE DATABASE` works (for tests and benchmarks).
///
/// `DATABASE_URL` set → the `postgres` database of that server; else a server on the default
/// socket or 127.0.0.1:5432 (user `postgres`); else a private throw-away cluster under
/// `$WEDSYNC_TEST_PG_DIR` (default `<tmp>/wedsync-test-pg`), started or reused. The answer is
/// computed once per process; later calls are cheap.
pub async fn admin_url() -> anyhow::Result<String> {
    static ADMIN_URL: OnceCell<String> = OnceCell::const_new();
    let url = ADMIN_URL
        .get_or_try_init(|| async {
            if let Some(url) = std::env::var("DATABASE_URL").ok().filter(|u| !u.is_empty()) {
                return with_database(&url, "postgres");
            }
            if let Some(server) = find_local_server().await {
                return Ok(server.url("postgres"));
            }
            let data_dir = std::env::var_os("WEDSYNC_TEST_PG_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| std::env::temp_dir().join("wedsync-test-pg"));
            let server = ensure_cluster(&data_dir, Durability::Throwaway).await?;
            Ok(server.url("postgres"))
        })
        .await?;
    Ok(url.clone())
}

/// The database URL of the embedded default when no `DATABASE_URL` is given: a server on the
/// default socket or 127.0.0.1:5432 (user `postgres`), else a private cluster under `data_dir`
/// (initialised on first use, started if stopped, reused if running). Database `database` is
/// created there if missing.
pub async fn resolve_database_url(database: &str, data_dir: &Path) -> Result<String, LocalPgError> {
    check_database_name(database)?;
    let server = match find_local_server().await {
        Some(server) => server,
        None => ensure_cluster(data_dir, Durability::Durable).await?,
    };
    create_database_if_missing(&server.options("postgres"), database).await?;
    Ok(server.url(database))
}

/// Initialise (if needed) and start (if stopped) the private cluster in `data_dir`, and return
/// the URL of its `postgres` database. Public for tests; [`resolve_database_url`] calls it when
/// no server is running.
pub async fn start_private_cluster(data_dir: &Path) -> Result<String, LocalPgError> {
    Ok(ensure_cluster(data_dir, Durability::Durable)
        .await?
        .url("postgres"))
}

/// Stop the private cluster in `data_dir` (`pg_ctl stop -m fast`) if it is running. Blocking.
pub fn stop_private_cluster(data_dir: &Path) -> Result<(), LocalPgError> {
    cluster::stop_cluster(data_dir)
}

/// Create database `database` on the server of `server_url` (a URL of any database there) if it
/// does not exist, and return the URL of `database`.
pub async fn ensure_database(server_url: &str, database: &str) -> Result<String, LocalPgError> {
    check_database_name(database)?;
    let options = PgConnectOptions::from_str(server_url)
        .map_err(|e| LocalPgError::InvalidUrl(e.to_string()))?;
    create_database_if_missing(&options, database).await?;
    with_database(server_url, database)
}
