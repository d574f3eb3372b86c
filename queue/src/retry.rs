//! Retry policy: exponential backoff with jitter, pure and testable.

use rand::Rng;
use std::time::Duration;

/// Delay before retry number `attempt` (1 = after the first failed attempt): 1 s doubling per
/// attempt, capped at one hour, with ±10 % jitter so that a burst of failures does not retry in
/// lockstep.
pub fn exponential_backoff(attempt: i32) -> Duration {
    jittered(base_backoff(attempt), rand::rng().random_range(-1.0..=1.0))
}

/// The backoff before jitter: `2^(attempt-1)` seconds, at most one hour.
pub fn base_backoff(attempt: i32) -> Duration {
    const CAP_SECS: u64 = 3600;
    let exponent = attempt.clamp(1, 13) as u32 - 1;
    Duration::from_secs((1u64 << exponent).min(CAP_SECS))
}

/// Apply a jitter of `unit` ∈ [-1, 1] times 10 % to `base`.
pub fn jittered(base: Duration, unit: f64) -> Duration {
    base.mul_f64(1.0 + 0.1 * unit.clamp(-1.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_backoff_doubles_from_one_second_and_caps_at_an_hour() {
        assert_eq!(base_backoff(1), Duration::from_secs(1));
        assert_eq!(base_backoff(2), Duration::from_secs(2));
        assert_eq!(base_backoff(5), Duration::from_secs(16));
        assert_eq!(base_backoff(12), Duration::from_secs(2048));
        assert_eq!(base_backoff(13), Duration::from_secs(3600));
        assert_eq!(base_backoff(500), Duration::from_secs(3600));
        assert_eq!(base_backoff(0), Duration::from_secs(1));
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        let base = Duration::from_secs(100);
        assert_eq!(jittered(base, -1.0), Duration::from_secs(90));
        assert_eq!(jittered(base, 1.0), Duration::from_secs(110));
        assert_eq!(jittered(base, 7.0), Duration::from_secs(110));
        for attempt in 1..20 {
            let delay = exponential_backoff(attempt);
            let base = base_backoff(attempt);
            assert!(
                delay >= base.mul_f64(0.9) && delay <= base.mul_f64(1.1),
                "{delay:?}"
            );
        }
    }
}
