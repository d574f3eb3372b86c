//! What every handler may use.

use sqlx::PgPool;

/// Shared resources of the job handlers; cheap to clone.
#[derive(Clone, Debug)]
pub struct AppContext {
    pub pool: PgPool,
}
