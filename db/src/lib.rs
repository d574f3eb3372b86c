//! The database of WedSync Jobs: the embedded migrations, the local PostgreSQL of the embedded
//! default (found or started), and fresh per-test databases.

pub mod local;
pub mod testing;

/// Every migration under `migrations/`, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");
