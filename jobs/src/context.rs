//! What every handler may use.

use crate::photos::pipeline::Limits as PhotoLimits;
use crate::storage::Storage;
use sqlx::PgPool;

/// Shared resources of the job handlers; cheap to clone.
#[derive(Clone, Debug)]
pub struct AppContext {
    pub pool: PgPool,
    /// Object storage of photo originals and variants.
    pub storage: Storage,
    /// Limits the photo pipeline applies before decoding.
    pub photo_limits: PhotoLimits,
    /// The bulk-messages family's transport and settings.
    pub messages: crate::messages::MessagesContext,
}

impl AppContext {
    /// A context on `pool` with in-memory storage, default photo limits and the default
    /// messages settings (mail goes to the outbox folder); the binary sets the real ones.
    pub fn new(pool: PgPool) -> Self {
        AppContext {
            pool,
            storage: Storage::in_memory(),
            photo_limits: PhotoLimits::default(),
            messages: Default::default(),
        }
    }

    pub fn with_storage(mut self, storage: Storage) -> Self {
        self.storage = storage;
        self
    }

    pub fn with_photo_limits(mut self, limits: PhotoLimits) -> Self {
        self.photo_limits = limits;
        self
    }

    pub fn with_messages(mut self, messages: crate::messages::MessagesContext) -> Self {
        self.messages = messages;
        self
    }
}
