//! The providers messages go out through (SPEC §5.1): SMTP for email, an HTTP API for SMS, each
//! with an optional secondary, behind circuit breakers and a send-rate limit shared by every
//! worker process.

mod error;
pub mod status;

pub use error::{SendError, SmsMessage};
pub use status::{
    BreakerReport, BreakerState, ProcessBreaker, ProviderRole, ProviderStatus, breaker_states,
    publish_breakers,
};
