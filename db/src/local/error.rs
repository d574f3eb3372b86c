//! What can go wrong finding or starting a local PostgreSQL.

use std::io;
use std::path::{Path, PathBuf};

/// Why no local PostgreSQL could be found or started. Each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum LocalPgError {
    #[error(
        "no local PostgreSQL server is reachable and no PostgreSQL server binaries (initdb, pg_ctl) \
         were found to start a private one: install PostgreSQL server binaries, e.g. \
         `apt-get install postgresql` on Debian/Ubuntu, or set DATABASE_URL"
    )]
    NoBinaries,
    #[error(
        "running as root, so PostgreSQL must run as the `postgres` user, but there is no such \
         user: create it (e.g. `useradd --system --home /var/lib/postgresql postgres`), run as an \
         ordinary user, or set DATABASE_URL"
    )]
    NoPostgresUser,
    #[error(
        "the `postgres` user cannot write to {data_dir}: a parent directory is probably not \
         accessible to it (e.g. one under /root); run from a directory it can reach, or set \
         DATABASE_URL"
    )]
    NotAccessible { data_dir: PathBuf },
    #[error(
        "{data_dir} is not empty but is not a PostgreSQL data directory (it has no PG_VERSION): \
         remove it, or set DATABASE_URL"
    )]
    NotACluster { data_dir: PathBuf },
    #[error("{path} is not a directory owned by uid {uid}: remove it and try again")]
    UnsafeSocketDir { path: PathBuf, uid: u32 },
    #[error("could not {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("`{command}` failed ({status}): {output}")]
    Command {
        command: String,
        status: String,
        output: String,
    },
    #[error(
        "the private PostgreSQL in {} did not start; the end of {}:\n{log_tail}",
        data_dir.display(), log.display()
    )]
    StartFailed {
        data_dir: PathBuf,
        log: PathBuf,
        log_tail: String,
    },
    #[error("could not connect to the local PostgreSQL at {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("could not create database `{database}`: {source}")]
    CreateDatabase {
        database: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("invalid database name {0:?}: use 1 to 63 bytes, e.g. `wedsync`")]
    InvalidDatabaseName(String),
    #[error("invalid database URL: {0} (expected e.g. postgres://user:password@host:5432/db)")]
    InvalidUrl(String),
    #[error("the task starting PostgreSQL failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// A `map_err` adapter: an I/O error while doing `action` to `path`.
pub(super) fn io_error(
    action: &'static str,
    path: &Path,
) -> impl FnOnce(io::Error) -> LocalPgError {
    let path = path.to_owned();
    move |source| LocalPgError::Io {
        action,
        path,
        source,
    }
}
