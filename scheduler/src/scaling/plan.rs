//! From the rules' decision to what a pool is set to: per-process concurrency and replicas, and
//! whether the cooldowns let it change now. Pure, like the rules.
//!
//! The model (docs/operations.md): the rules size a pool per worker process. Up to the pool's
//! maximum that is the concurrency every process runs; demand beyond it (the unclamped size the
//! rules asked for) is met by more processes, so the replicas published for KEDA are
//! `max(1 if min > 0 else 0, ceil(demand / max))`. Base 4 on a Saturday asks for 40; with a
//! maximum of 16 every process runs 16 and KEDA is asked for 3 replicas.

use crate::pools::{
    Backlog, COOLDOWN_DOWN, COOLDOWN_UP, Decision, Override, PoolConfig, Reason, Wedding, desired,
};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

/// What a pool runs: concurrency per worker process, and worker processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sizing {
    pub concurrency: u32,
    pub replicas: u32,
}

impl Sizing {
    /// Jobs the whole pool runs at once.
    pub fn capacity(self) -> u64 {
        u64::from(self.concurrency) * u64::from(self.replicas)
    }
}

/// Who changed a pool, as recorded in its history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The minute evaluation of the rules.
    Rules,
    /// An operator override decided the size.
    Override,
    /// An operator changed the pool's bounds or base size, applied at once.
    Operator,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Rules => "rules",
            Source::Override => "override",
            Source::Operator => "operator",
        }
    }
}

/// The sizing the rules (or an override) ask for now, with the reasons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub sizing: Sizing,
    /// The unclamped size the rules asked for (before the pool's maximum).
    pub demand: u32,
    pub reasons: Vec<Reason>,
    pub overridden: bool,
}

/// Replicas that meet `demand` when each process runs at most the pool's maximum.
pub fn replicas_for(config: &PoolConfig, demand: u32) -> u32 {
    let per_process = config.max.max(config.min).max(1);
    demand.div_ceil(per_process).max(u32::from(config.min > 0))
}

/// The plan for a pool at `now`: [`desired`] for the concurrency and its reasons, the same rules
/// without the maximum for the demand and the replicas. An unexpired override sets the
/// concurrency; the replicas still follow the rules' demand (an override of 0 drains the pool:
/// 0 replicas).
pub fn plan(
    config: &PoolConfig,
    now: DateTime<Utc>,
    tz: Tz,
    weddings: &[Wedding],
    backlog: Option<Backlog>,
    override_: Option<&Override>,
) -> Plan {
    let unbounded = PoolConfig {
        max: u32::MAX,
        ..*config
    };
    let demand = desired(&unbounded, now, tz, weddings, backlog, None).size;
    let replicas = replicas_for(config, demand);
    let decision: Decision = desired(config, now, tz, weddings, backlog, override_);
    let overridden = decision.is_override();
    let replicas = match (overridden, decision.size) {
        (true, 0) => 0,
        (true, _) => replicas.max(1),
        (false, _) => replicas,
    };
    Plan {
        sizing: Sizing {
            concurrency: decision.size,
            replicas,
        },
        demand,
        reasons: decision.reasons,
        overridden,
    }
}

/// Whether a pool at `current`, last changed at `last_change`, moves to `plan` now.
///
/// No change when nothing differs. At once: a pool never changed by scaling, an operator's
/// action (`forced`), an override, and the end of an override (`was_overridden`: it wins until
/// it expires, not until a cooldown later). Otherwise the cooldowns of the rules hold, judged on
/// the whole pool's capacity: up only [`COOLDOWN_UP`] after the last change, down only
/// [`COOLDOWN_DOWN`] after it.
pub fn changes_now(
    current: Sizing,
    last_change: Option<DateTime<Utc>>,
    plan: &Plan,
    was_overridden: bool,
    forced: bool,
    now: DateTime<Utc>,
) -> bool {
    if plan.sizing == current {
        return false;
    }
    let Some(last) = last_change else {
        return true;
    };
    if forced || plan.overridden || was_overridden {
        return true;
    }
    let cooldown = if plan.sizing.capacity() >= current.capacity() {
        COOLDOWN_UP
    } else {
        COOLDOWN_DOWN
    };
    now - last >= cooldown
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeDelta, TimeZone};
    use chrono_tz::Europe::London;

    const POOL: PoolConfig = PoolConfig {
        min: 1,
        max: 16,
        base: 4,
    };

    fn at(y: i32, mo: u32, d: u32, h: u32) -> DateTime<Utc> {
        London
            .with_ymd_and_hms(y, mo, d, h, 0, 0)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn demand_beyond_the_maximum_becomes_replicas() {
        let saturday = plan(&POOL, at(2026, 6, 20, 12), London, &[], None, None);
        assert_eq!(
            saturday.sizing,
            Sizing {
                concurrency: 16,
                replicas: 3
            }
        );
        assert_eq!(saturday.demand, 40);
        let tuesday = plan(&POOL, at(2026, 2, 17, 12), London, &[], None, None);
        assert_eq!(
            tuesday.sizing,
            Sizing {
                concurrency: 4,
                replicas: 1
            }
        );
    }

    #[test]
    fn replicas_floor_follows_the_minimum() {
        let idle = PoolConfig {
            min: 0,
            max: 8,
            base: 0,
        };
        assert_eq!(replicas_for(&idle, 0), 0);
        assert_eq!(replicas_for(&POOL, 0), 1);
        assert_eq!(replicas_for(&POOL, 33), 3);
    }

    #[test]
    fn an_override_of_zero_drains_the_pool() {
        let now = at(2026, 2, 17, 12);
        let drain = Override {
            size: 0,
            until: now + TimeDelta::hours(1),
            reason: "provider outage".into(),
        };
        let p = plan(&POOL, now, London, &[], None, Some(&drain));
        assert!(p.overridden);
        assert_eq!(
            p.sizing,
            Sizing {
                concurrency: 0,
                replicas: 0
            }
        );
    }

    #[test]
    fn cooldowns_judge_the_whole_pool() {
        let now = at(2026, 2, 17, 12);
        let current = Sizing {
            concurrency: 16,
            replicas: 3,
        };
        let down = plan(&POOL, now, London, &[], None, None);
        let recent = Some(now - TimeDelta::minutes(5));
        assert!(!changes_now(current, recent, &down, false, false, now));
        assert!(changes_now(current, recent, &down, true, false, now));
        assert!(changes_now(current, recent, &down, false, true, now));
        let old = Some(now - TimeDelta::minutes(10));
        assert!(changes_now(current, old, &down, false, false, now));
        assert!(!changes_now(down.sizing, recent, &down, false, true, now));
    }
}
