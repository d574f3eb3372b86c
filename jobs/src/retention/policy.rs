//! The retention policies: what each removes, and after how long by default.
//!
//! A new data family (deliveries' rendered bodies, raw metric events, photo originals, erased
//! guests) is one more entry in [`POLICIES`] with its statement in [`super::sql`]; a family
//! whose purge is more than one statement (photo originals: remove the stored objects, then the
//! rows) adds a variant to [`Purge`] and its arm in [`super::delete`].

use super::sql;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How a policy removes one bounded batch of expired data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purge {
    /// One statement taking `$1` = age in days and `$2` = batch size, affecting at most `$2`
    /// rows older than the cutoff (see [`super::sql`] for the shape it must have).
    Statement(&'static str),
    /// Finished jobs in one state ([`super::sql::DELETE_FINISHED_JOBS`]).
    FinishedJobs { state: &'static str },
    /// One statement taking the same `$1` and `$2` that returns the number of rows it removed
    /// as a single bigint (for purges done by a SQL function, like dropping partitions).
    Counted(&'static str),
    /// Failed photos: their originals in storage (unless shared), then their rows
    /// ([`crate::photos::retention`]).
    FailedPhotos,
}

/// A kind of data that expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// The name used in args, results and logs.
    pub name: &'static str,
    /// Rows older than this many days are removed unless the args say otherwise.
    pub default_older_than_days: u32,
    pub purge: Purge,
}

/// Every policy, in the order a cleanup runs them.
pub const POLICIES: &[Policy] = &[
    Policy {
        name: "completed_jobs",
        default_older_than_days: 14,
        purge: Purge::FinishedJobs { state: "completed" },
    },
    Policy {
        name: "discarded_jobs",
        default_older_than_days: 30,
        purge: Purge::FinishedJobs { state: "discarded" },
    },
    Policy {
        name: "cancelled_jobs",
        default_older_than_days: 30,
        purge: Purge::FinishedJobs { state: "cancelled" },
    },
    Policy {
        name: "idempotency_keys",
        default_older_than_days: 2,
        purge: Purge::Statement(sql::DELETE_IDEMPOTENCY_KEYS),
    },
    Policy {
        name: "revoked_api_keys",
        default_older_than_days: 90,
        purge: Purge::Statement(sql::DELETE_REVOKED_API_KEYS),
    },
    Policy {
        name: "metric_events",
        default_older_than_days: 14,
        purge: Purge::Counted(sql::PURGE_METRIC_EVENTS),
    },
    Policy {
        name: "failed_photo_originals",
        default_older_than_days: 30,
        purge: Purge::FailedPhotos,
    },
    Policy {
        name: "message_bodies",
        default_older_than_days: 30,
        purge: Purge::Statement(sql::DELETE_MESSAGE_BODIES),
    },
    Policy {
        name: "pool_changes",
        default_older_than_days: 90,
        purge: Purge::Statement(sql::DELETE_POOL_CHANGES),
    },
];

/// Longest age a policy may be given (100 years): larger values are surely a mistake.
pub const MAX_OLDER_THAN_DAYS: u32 = 36_500;

/// What the args may change about one policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyOverride {
    pub older_than_days: u32,
}

/// A policy with the age this run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolved {
    pub policy: &'static Policy,
    pub older_than_days: u32,
}

/// Why overrides cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("unknown retention polic{plural}: {names} (known: {known})",
        plural = if .0.len() == 1 { "y" } else { "ies" },
        names = .0.join(", "),
        known = known_names())]
    Unknown(Vec<String>),
    #[error(
        "retention policy `{0}`: older_than_days must be between 1 and {MAX_OLDER_THAN_DAYS}, not {1}"
    )]
    BadAge(String, u32),
}

fn known_names() -> String {
    POLICIES
        .iter()
        .map(|p| p.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every policy in run order with its default age or the override for it; all unknown names
/// are reported at once.
pub fn resolve(overrides: &BTreeMap<String, PolicyOverride>) -> Result<Vec<Resolved>, PolicyError> {
    let unknown: Vec<String> = overrides
        .keys()
        .filter(|name| !POLICIES.iter().any(|p| p.name == name.as_str()))
        .cloned()
        .collect();
    if !unknown.is_empty() {
        return Err(PolicyError::Unknown(unknown));
    }
    POLICIES
        .iter()
        .map(|policy| {
            let older_than_days = overrides
                .get(policy.name)
                .map_or(policy.default_older_than_days, |o| o.older_than_days);
            if !(1..=MAX_OLDER_THAN_DAYS).contains(&older_than_days) {
                return Err(PolicyError::BadAge(policy.name.to_owned(), older_than_days));
            }
            Ok(Resolved {
                policy,
                older_than_days,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_defaults_valid() {
        for (i, p) in POLICIES.iter().enumerate() {
            assert!(POLICIES[..i].iter().all(|q| q.name != p.name), "{}", p.name);
            assert!((1..=MAX_OLDER_THAN_DAYS).contains(&p.default_older_than_days));
        }
    }

    #[test]
    fn defaults_apply_without_overrides() {
        let resolved = resolve(&BTreeMap::new()).unwrap();
        assert_eq!(resolved.len(), POLICIES.len());
        assert_eq!(resolved[0].policy.name, "completed_jobs");
        assert_eq!(resolved[0].older_than_days, 14);
    }

    #[test]
    fn overrides_replace_the_default_age() {
        let overrides = BTreeMap::from([(
            "idempotency_keys".to_owned(),
            PolicyOverride { older_than_days: 7 },
        )]);
        let resolved = resolve(&overrides).unwrap();
        let idem = resolved
            .iter()
            .find(|r| r.policy.name == "idempotency_keys")
            .unwrap();
        assert_eq!(idem.older_than_days, 7);
    }

    #[test]
    fn unknown_names_are_all_named() {
        let o = PolicyOverride { older_than_days: 1 };
        let overrides = BTreeMap::from([("bogus".to_owned(), o), ("nope".to_owned(), o)]);
        let err = resolve(&overrides).unwrap_err().to_string();
        assert!(
            err.starts_with("unknown retention policies: bogus, nope"),
            "{err}"
        );
    }

    #[test]
    fn zero_days_is_refused() {
        let overrides = BTreeMap::from([(
            "completed_jobs".to_owned(),
            PolicyOverride { older_than_days: 0 },
        )]);
        assert!(matches!(resolve(&overrides), Err(PolicyError::BadAge(..))));
    }
}
