//! HTTP tests of the API against a real PostgreSQL: each test gets its own migrated database and
//! its own server on a loopback port. One binary (modules below) so the suite links once.

mod auth;
mod bulk_send_control;
mod bulk_sends;
mod erasures;
mod jobs;
mod mail_reports;
mod metrics_hourly;
mod operations;
mod photos;
mod pools;
mod provider_breakers;
mod requests;
mod schedules;
mod sms_webhooks;
mod support;
mod suppressions;
mod unsubscribe;
mod weddings;
