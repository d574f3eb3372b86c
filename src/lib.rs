//! WedSync Jobs: start-up wiring of the `wedsync-jobs` binary.
