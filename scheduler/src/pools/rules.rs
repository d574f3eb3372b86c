//! The rules that size a pool: [`desired`].

use chrono::{DateTime, Datelike, TimeDelta, Timelike, Utc, Weekday};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Wedding season (1 May to 31 October, local dates) multiplies the base size by this.
pub const SEASON_MULTIPLIER: u32 = 3;
/// The Saturday window (Friday 22:00 to Sunday 02:00, local wall clock) multiplies the base size
/// by this.
pub const SATURDAY_MULTIPLIER: u32 = 10;
/// A registered wedding is pre-scaled this long before it starts.
pub const PRESCALE_AHEAD: TimeDelta = TimeDelta::hours(2);
/// A registered wedding is assumed to last this long after it starts.
pub const WEDDING_DURATION: TimeDelta = TimeDelta::hours(12);
/// Photos one worker processes in an hour (all variants), for a wedding's need.
pub const PHOTOS_PER_WORKER_HOUR: u32 = 600;
/// Guests one worker serves (their messages) during a wedding, for a wedding's need.
pub const GUESTS_PER_WORKER: u32 = 500;
/// The backlog rule sizes the pool to clear the available jobs in about this many minutes.
pub const BACKLOG_CLEAR_MINUTES: f64 = 5.0;
/// An operator override is not bounded by the pool's minimum or maximum (an operator may drain a
/// queue to 0 or go past the configured maximum in an incident), only by this hard ceiling.
pub const OVERRIDE_CEILING: u32 = 1_000;

/// A queue's pool: bounds and base size, per worker process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolConfig {
    pub min: u32,
    pub max: u32,
    pub base: u32,
}

/// A wedding registered with `POST /v1/weddings`.
///
/// Its need, in workers added to every pool while it is active (from [`PRESCALE_AHEAD`] before
/// `starts_at` until [`WEDDING_DURATION`] after), is the larger of
/// `ceil(expected_photos / PHOTOS_PER_WORKER_HOUR)` (photo processing) and
/// `ceil(expected_guests / GUESTS_PER_WORKER)` (messages to its guests). A pool does not know
/// which kind of job its queue runs, so every pool gets the larger need; keep it simple.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wedding {
    pub starts_at: DateTime<Utc>,
    pub expected_guests: u32,
    pub expected_photos: u32,
}

impl Wedding {
    /// Workers this wedding adds to a pool while it is active.
    pub fn need(&self) -> u32 {
        self.expected_photos
            .div_ceil(PHOTOS_PER_WORKER_HOUR)
            .max(self.expected_guests.div_ceil(GUESTS_PER_WORKER))
    }

    /// Whether it starts within [`PRESCALE_AHEAD`] (inclusive) or is in progress at `now`.
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.starts_at - PRESCALE_AHEAD <= now && now < self.starts_at + WEDDING_DURATION
    }
}

/// A queue's backlog and the measured throughput of one worker.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Backlog {
    /// Jobs available to run now.
    pub available: u64,
    /// Jobs one worker completes per minute, as measured; a measurement that is not a positive
    /// finite number is ignored (the backlog rule then does not contribute).
    pub per_worker_per_minute: f64,
}

impl Backlog {
    /// Workers needed to clear the backlog in about [`BACKLOG_CLEAR_MINUTES`], if measurable.
    pub fn workers_needed(&self) -> Option<u32> {
        let rate = self.per_worker_per_minute;
        if self.available == 0 || !rate.is_finite() || rate <= 0.0 {
            return None;
        }
        // Float to integer `as` saturates, so a huge backlog asks for u32::MAX (then clamped).
        Some((self.available as f64 / (rate * BACKLOG_CLEAR_MINUTES)).ceil() as u32)
    }
}

/// An operator's override of a pool's size, until it expires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Override {
    pub size: u32,
    /// The override applies while `now < until`.
    pub until: DateTime<Utc>,
    pub reason: String,
}

/// Why a pool has its size: every rule that gave the decided size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum Reason {
    /// The base size.
    Base,
    /// Wedding season, base × [`SEASON_MULTIPLIER`].
    Season,
    /// The Saturday window, base × [`SATURDAY_MULTIPLIER`].
    SaturdayWindow,
    /// A registered wedding starting at `starts_at`, active now.
    Wedding { starts_at: DateTime<Utc> },
    /// The backlog of `available` jobs.
    Backlog { available: u64 },
    /// An operator override, until it expires.
    Override {
        reason: String,
        until: DateTime<Utc>,
    },
    /// The rules asked for less than the pool's minimum.
    Minimum { min: u32 },
    /// The rules asked for more than the pool's maximum (or an override for more than
    /// [`OVERRIDE_CEILING`]).
    Maximum { max: u32 },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Base => f.write_str("base size"),
            Reason::Season => write!(f, "wedding season (May–October) ×{SEASON_MULTIPLIER}"),
            Reason::SaturdayWindow => write!(
                f,
                "Saturday window (Friday 22:00 to Sunday 02:00 local) ×{SATURDAY_MULTIPLIER}"
            ),
            Reason::Wedding { starts_at } => write!(f, "wedding starting at {starts_at}"),
            Reason::Backlog { available } => write!(f, "backlog of {available} available jobs"),
            Reason::Override { reason, until } => {
                write!(f, "operator override until {until}: {reason}")
            }
            Reason::Minimum { min } => write!(f, "raised to the pool minimum {min}"),
            Reason::Maximum { max } => write!(f, "capped at the maximum {max}"),
        }
    }
}

/// A pool's desired size and the reasons for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub size: u32,
    pub reasons: Vec<Reason>,
}

impl Decision {
    /// Whether an operator override decided the size (it then skips the cooldowns).
    pub fn is_override(&self) -> bool {
        self.reasons
            .iter()
            .any(|reason| matches!(reason, Reason::Override { .. }))
    }
}

/// Whether `now` falls in the Saturday window: Friday 22:00 to Sunday 02:00 on the wall clock of
/// `tz`, so daylight saving time moves the window with the local clock.
fn in_saturday_window(local: &DateTime<Tz>) -> bool {
    match local.weekday() {
        Weekday::Fri => local.hour() >= 22,
        Weekday::Sat => true,
        Weekday::Sun => local.hour() < 2,
        _ => false,
    }
}

/// Whether the local date falls in wedding season (1 May to 31 October).
fn in_season(local: &DateTime<Tz>) -> bool {
    (5..=10).contains(&local.month())
}

/// The desired size of a pool at `now` (SPEC §6).
///
/// An unexpired `override_` (`now < until`) wins outright: its size, bounded only by
/// [`OVERRIDE_CEILING`] (not by the pool's minimum or maximum). Otherwise the size is the largest
/// of the rules, clamped to `[config.min, config.max]`:
/// - base: `config.base`;
/// - season: `base × 3` from 1 May to 31 October (local date in `tz`);
/// - Saturday window: `base × 10` from Friday 22:00 to Sunday 02:00 (local wall clock in `tz`);
/// - weddings: `base +` the sum of [`Wedding::need`] over the weddings active at `now`;
/// - backlog: [`Backlog::workers_needed`].
///
/// The reasons name every rule that alone gives the decided size (ties included), plus
/// [`Reason::Minimum`] or [`Reason::Maximum`] when the clamp changed it.
pub fn desired(
    config: &PoolConfig,
    now: DateTime<Utc>,
    tz: Tz,
    weddings: &[Wedding],
    backlog: Option<Backlog>,
    override_: Option<&Override>,
) -> Decision {
    if let Some(o) = override_.filter(|o| now < o.until) {
        let mut reasons = vec![Reason::Override {
            reason: o.reason.clone(),
            until: o.until,
        }];
        if o.size > OVERRIDE_CEILING {
            reasons.push(Reason::Maximum {
                max: OVERRIDE_CEILING,
            });
        }
        return Decision {
            size: o.size.min(OVERRIDE_CEILING),
            reasons,
        };
    }

    let local = now.with_timezone(&tz);
    let base = config.base;
    // Each rule that applies: the size it asks for and its reasons.
    let mut candidates: Vec<(u32, Vec<Reason>)> = vec![(base, vec![Reason::Base])];
    if in_season(&local) {
        candidates.push((base.saturating_mul(SEASON_MULTIPLIER), vec![Reason::Season]));
    }
    if in_saturday_window(&local) {
        candidates.push((
            base.saturating_mul(SATURDAY_MULTIPLIER),
            vec![Reason::SaturdayWindow],
        ));
    }
    let active: Vec<&Wedding> = weddings
        .iter()
        .filter(|w| w.is_active(now) && w.need() > 0)
        .collect();
    if !active.is_empty() {
        let need = active
            .iter()
            .fold(base, |size, w| size.saturating_add(w.need()));
        let reasons = active
            .iter()
            .map(|w| Reason::Wedding {
                starts_at: w.starts_at,
            })
            .collect();
        candidates.push((need, reasons));
    }
    if let Some(b) = backlog
        && let Some(needed) = b.workers_needed()
    {
        candidates.push((
            needed,
            vec![Reason::Backlog {
                available: b.available,
            }],
        ));
    }

    let wanted = candidates
        .iter()
        .map(|(size, _)| *size)
        .max()
        .unwrap_or(base);
    // A maximum below the minimum is a misconfiguration; the minimum wins.
    let max = config.max.max(config.min);
    let size = wanted.clamp(config.min, max);
    let mut reasons: Vec<Reason> = candidates
        .into_iter()
        .filter(|(asked, _)| *asked >= size)
        .flat_map(|(_, reasons)| reasons)
        .collect();
    if wanted > size {
        reasons.push(Reason::Maximum { max });
    } else if wanted < size {
        reasons.push(Reason::Minimum { min: config.min });
    }
    Decision { size, reasons }
}
