//! The job families of WedSync Jobs, one module per family, and [`register_all`] that hands
//! them to the worker.

mod context;
pub mod erasure;
pub mod messages;
mod metrics;
mod noop;
pub mod photos;
mod retention;
mod scaling;
pub mod storage;
pub mod suppression;
mod sync;

pub use context::AppContext;
pub use messages::{BulkSendFanout, DeliverBatch};
pub use metrics::MetricsRollup;
pub use noop::Noop;
pub use photos::PhotoProcess;
pub use retention::{PolicyOverride, RetentionCleanup};
pub use scaling::PoolScaling;

use wedsync_queue::Registry;

/// Every job kind the product runs.
pub fn register_all() -> Registry<AppContext> {
    let mut registry = Registry::new();
    registry.register::<Noop>();
    registry.register::<RetentionCleanup>();
    registry.register::<MetricsRollup>();
    registry.register::<PoolScaling>();
    registry.register::<PhotoProcess>();
    registry.register::<BulkSendFanout>();
    registry.register::<DeliverBatch>();
    registry
}
