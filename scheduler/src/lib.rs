//! Cron entries, leader election and pool rules
