//! The job families of WedSync Jobs, one module per family, and [`register_all`] that hands
//! them to the worker.

mod context;
mod noop;
pub mod photos;
mod retention;
pub mod storage;

pub use context::AppContext;
pub use noop::Noop;
pub use photos::PhotoProcess;
pub use retention::{PolicyOverride, RetentionCleanup};

use wedsync_queue::Registry;

/// Every job kind the product runs.
pub fn register_all() -> Registry<AppContext> {
    let mut registry = Registry::new();
    registry.register::<Noop>();
    registry.register::<RetentionCleanup>();
    registry.register::<PhotoProcess>();
    registry
}
