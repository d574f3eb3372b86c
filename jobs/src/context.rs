//! What every handler may use.

use sqlx::PgPool;

/// Shared resources of the job handlers; cheap to clone.
#[derive(Clone, Debug)]
pub struct AppContext {
    pub pool: PgPool,
    /// The bulk-messages family's transport and settings.
    pub messages: crate::messages::MessagesContext,
}

impl AppContext {
    /// A context with the default messages settings (mail goes to the outbox folder).
    pub fn new(pool: PgPool) -> Self {
        AppContext {
            pool,
            messages: Default::default(),
        }
    }
}
