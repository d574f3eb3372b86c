//! The worker runtime: fetch loop, live concurrency, heartbeats, rescue, graceful shutdown
