//! One behaviour per test, with the time injected.

use super::*;
use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use chrono_tz::Europe::London;
use chrono_tz::Tz;

const POOL: PoolConfig = PoolConfig {
    min: 1,
    max: 50,
    base: 4,
};

/// The instant of a London wall-clock time (unambiguous ones only).
fn london(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    London
        .with_ymd_and_hms(y, mo, d, h, mi, 0)
        .single()
        .expect("an unambiguous London time")
        .with_timezone(&Utc)
}

fn rules(now: DateTime<Utc>) -> Decision {
    desired(&POOL, now, London, &[], None, None)
}

#[test]
fn tuesday_in_february_is_base() {
    let decision = rules(london(2026, 2, 17, 14, 0));
    assert_eq!(decision.size, 4);
    assert_eq!(decision.reasons, vec![Reason::Base]);
}

#[test]
fn saturday_in_june_is_ten_times_capped_at_max() {
    let decision = rules(london(2026, 6, 20, 12, 0));
    // base 4 × 10 = 40 ≤ 50: not capped.
    assert_eq!(decision.size, 40);
    assert_eq!(decision.reasons, vec![Reason::SaturdayWindow]);

    let small = PoolConfig { max: 20, ..POOL };
    let decision = desired(&small, london(2026, 6, 20, 12, 0), London, &[], None, None);
    assert_eq!(decision.size, 20);
    // Season (×3 = 12) does not reach 20; the window does, and the maximum caps it.
    assert_eq!(
        decision.reasons,
        vec![Reason::SaturdayWindow, Reason::Maximum { max: 20 }]
    );
}

#[test]
fn friday_2159_is_not_the_window_but_2200_is() {
    // Friday 23 October 2026, two days before the clocks go back (BST, UTC+1).
    let before = rules(london(2026, 10, 23, 21, 59));
    assert_eq!(before.size, 12, "season only: 4 × 3");
    assert_eq!(before.reasons, vec![Reason::Season]);
    let at = london(2026, 10, 23, 22, 0);
    assert_eq!(at, Utc.with_ymd_and_hms(2026, 10, 23, 21, 0, 0).unwrap());
    let window = rules(at);
    assert_eq!(window.size, 40);
    assert_eq!(window.reasons, vec![Reason::SaturdayWindow]);

    // Friday 20 February 2026 (GMT, UTC+0), out of season.
    assert_eq!(
        rules(london(2026, 2, 20, 21, 59)).reasons,
        vec![Reason::Base]
    );
    assert_eq!(
        rules(london(2026, 2, 20, 22, 0)).reasons,
        vec![Reason::SaturdayWindow]
    );

    // Sunday 29 March 2026: at 01:00 GMT the clocks jump to 02:00 BST, which ends the window.
    let last_minute = Utc.with_ymd_and_hms(2026, 3, 29, 0, 59, 0).unwrap();
    assert_eq!(rules(last_minute).reasons, vec![Reason::SaturdayWindow]);
    let jump = Utc.with_ymd_and_hms(2026, 3, 29, 1, 0, 0).unwrap();
    assert_eq!(rules(jump).reasons, vec![Reason::Base]);

    // Sunday 25 October 2026: 01:00–02:00 happens twice; the window ends at 02:00 GMT.
    let second_one_thirty = Utc.with_ymd_and_hms(2026, 10, 25, 1, 30, 0).unwrap();
    assert_eq!(
        rules(second_one_thirty).reasons,
        vec![Reason::SaturdayWindow]
    );
    let two_gmt = Utc.with_ymd_and_hms(2026, 10, 25, 2, 0, 0).unwrap();
    assert_eq!(rules(two_gmt).reasons, vec![Reason::Season]);
}

#[test]
fn registered_wedding_two_hours_ahead_scales_up() {
    // Tuesday in February: base 4; the wedding needs ceil(1800 / 600) = 3 more workers.
    let starts_at = london(2026, 2, 17, 14, 0);
    let wedding = Wedding {
        starts_at,
        expected_guests: 120,
        expected_photos: 1_800,
    };
    assert_eq!(wedding.need(), 3);
    let at = |now| desired(&POOL, now, London, &[wedding], None, None);

    let two_hours_one_minute = at(starts_at - TimeDelta::minutes(121));
    assert_eq!(two_hours_one_minute.size, 4);
    assert_eq!(two_hours_one_minute.reasons, vec![Reason::Base]);

    let two_hours = at(starts_at - TimeDelta::hours(2));
    assert_eq!(two_hours.size, 7);
    assert_eq!(two_hours.reasons, vec![Reason::Wedding { starts_at }]);

    // Still scaled while in progress, not after its assumed 12 hours.
    assert_eq!(at(starts_at + TimeDelta::hours(11)).size, 7);
    assert_eq!(at(starts_at + TimeDelta::hours(12)).size, 4);
}

#[test]
fn override_wins_until_it_expires() {
    let now = london(2026, 6, 20, 12, 0);
    let until = now + TimeDelta::minutes(30);
    let op = Override {
        size: 70,
        until,
        reason: "incident 42".to_owned(),
    };
    let during = desired(&POOL, now, London, &[], None, Some(&op));
    // Not capped by the pool's maximum of 50.
    assert_eq!(during.size, 70);
    assert_eq!(
        during.reasons,
        vec![Reason::Override {
            reason: "incident 42".to_owned(),
            until
        }]
    );
    // It applies at once, whatever the cooldown.
    assert_eq!(apply_cooldown(40, Some(now), &during, now), Some(70));

    let expired = desired(&POOL, until, London, &[], None, Some(&op));
    assert_eq!(expired.size, 40);
    assert_eq!(expired.reasons, vec![Reason::SaturdayWindow]);

    let huge = Override {
        size: 5_000,
        ..op.clone()
    };
    assert_eq!(
        desired(&POOL, now, London, &[], None, Some(&huge)).size,
        OVERRIDE_CEILING
    );
}

#[test]
fn cooldowns_hold_when_rules_flap() {
    // A backlog that appears on even minutes and is gone on odd ones: the rules flip between
    // 20 and the base size 4 every minute for an hour.
    let start = london(2026, 2, 17, 9, 0);
    let mut current = 4;
    let mut last_change: Option<DateTime<Utc>> = None;
    let mut changes = Vec::new();
    for minute in 0..60 {
        let now = start + TimeDelta::minutes(minute);
        let backlog = Backlog {
            available: if minute % 2 == 0 { 1_000 } else { 0 },
            per_worker_per_minute: 10.0,
        };
        let decision = desired(&POOL, now, London, &[], Some(backlog), None);
        if let Some(size) = apply_cooldown(current, last_change, &decision, now) {
            if let Some(last) = last_change {
                let since = now - last;
                if size < current {
                    assert!(
                        since >= TimeDelta::minutes(10),
                        "down {since} after a change"
                    );
                } else {
                    assert!(since >= TimeDelta::minutes(3), "up {since} after a change");
                }
            }
            changes.push((minute, size));
            current = size;
            last_change = Some(now);
        }
    }
    assert_eq!(
        changes,
        vec![
            (0, 20),
            (11, 4),
            (14, 20),
            (25, 4),
            (28, 20),
            (39, 4),
            (42, 20),
            (53, 4),
            (56, 20)
        ]
    );
}

#[test]
fn backlog_needs_more_workers() {
    let now = london(2026, 2, 17, 14, 0);
    // 600 jobs at 10 per worker-minute, cleared in 5 minutes: 12 workers.
    let backlog = Backlog {
        available: 600,
        per_worker_per_minute: 10.0,
    };
    let decision = desired(&POOL, now, London, &[], Some(backlog), None);
    assert_eq!(decision.size, 12);
    assert_eq!(decision.reasons, vec![Reason::Backlog { available: 600 }]);

    // No measured throughput yet: the backlog rule does not contribute.
    let unmeasured = Backlog {
        per_worker_per_minute: 0.0,
        ..backlog
    };
    assert_eq!(
        desired(&POOL, now, London, &[], Some(unmeasured), None).reasons,
        vec![Reason::Base]
    );
}

#[test]
fn rules_below_the_minimum_are_raised_to_it() {
    let pool = PoolConfig {
        min: 6,
        max: 50,
        base: 4,
    };
    let decision = desired(&pool, london(2026, 2, 17, 14, 0), London, &[], None, None);
    assert_eq!(decision.size, 6);
    assert_eq!(decision.reasons, vec![Reason::Minimum { min: 6 }]);
}

#[test]
fn reasons_display_for_operators() {
    let tz: Tz = London;
    let starts_at = tz
        .with_ymd_and_hms(2026, 6, 20, 14, 0, 0)
        .unwrap()
        .with_timezone(&Utc);
    assert_eq!(
        Reason::Wedding { starts_at }.to_string(),
        "wedding starting at 2026-06-20 13:00:00 UTC"
    );
    assert_eq!(
        Reason::Backlog { available: 7 }.to_string(),
        "backlog of 7 available jobs"
    );
    assert_eq!(
        serde_json::to_value(Reason::SaturdayWindow).unwrap(),
        serde_json::json!({"rule": "saturday_window"})
    );
}
