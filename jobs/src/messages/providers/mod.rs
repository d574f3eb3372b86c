//! The providers messages go out through (SPEC §5.1): SMTP for email, an HTTP API for SMS, each
//! with an optional secondary, behind circuit breakers and a send-rate limit shared by every
//! worker process.

mod error;
mod sms;

pub use error::{SendError, SmsMessage};
pub use sms::{SmsClient, SmsConfigError, SmsOutbox};
