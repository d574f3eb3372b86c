//! Worker pools and pre-scaling (SPEC §6): pure rules, no database and no I/O, with the time
//! injected so every rule is testable.
//!
//! Each queue has a pool ([`PoolConfig`]: minimum, maximum, base size per worker process). Once
//! a minute the scheduler evaluates [`desired`] for every pool, which returns a [`Decision`]: the
//! size and every [`Reason`] that produced it. [`apply_cooldown`] then says whether the pool's
//! current size changes now (3 minutes since the last change to scale up, 10 minutes to scale
//! down, an operator override at once); the caller records each change with its reasons.

mod cooldown;
mod rules;

pub use cooldown::{COOLDOWN_DOWN, COOLDOWN_UP, apply_cooldown};
pub use rules::{
    BACKLOG_CLEAR_MINUTES, Backlog, Decision, GUESTS_PER_WORKER, OVERRIDE_CEILING, Override,
    PHOTOS_PER_WORKER_HOUR, PRESCALE_AHEAD, PoolConfig, Reason, SATURDAY_MULTIPLIER,
    SEASON_MULTIPLIER, WEDDING_DURATION, Wedding, desired,
};

#[cfg(test)]
mod tests;
