//! Cooldowns between pool size changes: [`apply_cooldown`].

use super::Decision;
use chrono::{DateTime, TimeDelta, Utc};

/// A pool scales up only this long after its last change.
pub const COOLDOWN_UP: TimeDelta = TimeDelta::minutes(3);
/// A pool scales down only this long after its last change.
pub const COOLDOWN_DOWN: TimeDelta = TimeDelta::minutes(10);

/// The size to set a pool to now, or None to keep `current`.
///
/// A pool whose size never changed (`last_change_at` None) takes the decision at once; otherwise
/// it scales up only [`COOLDOWN_UP`] after its last change and down only [`COOLDOWN_DOWN`] after
/// it, so rules that flap do not make the pool flap. An operator override applies at once.
pub fn apply_cooldown(
    current: u32,
    last_change_at: Option<DateTime<Utc>>,
    decision: &Decision,
    now: DateTime<Utc>,
) -> Option<u32> {
    let target = decision.size;
    if target == current {
        return None;
    }
    let Some(last) = last_change_at else {
        return Some(target);
    };
    if decision.is_override() {
        return Some(target);
    }
    let cooldown = if target > current {
        COOLDOWN_UP
    } else {
        COOLDOWN_DOWN
    };
    (now - last >= cooldown).then_some(target)
}
