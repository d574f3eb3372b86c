//! Circuit-breaker states as the worker processes report them (table `provider_breakers`,
//! migration 0011), for `GET /v1/queues` and `/metrics` (SPEC §5.1: "visible").
//!
//! Breakers live in the processes, one per provider per process. Each process publishes its
//! reports every few seconds and on every change; readers only count rows refreshed recently,
//! so a process that died stops counting after [`REPORT_FRESHNESS`], and its rows are pruned
//! by the next publish of any process after `prune_after`. Times are the database's clock.

use super::breaker::BreakerSnapshot;
use crate::suppression::Channel;
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

/// How recent a report must be to count in `GET /v1/queues` and `/metrics`.
pub const REPORT_FRESHNESS: Duration = Duration::from_secs(30);

/// A suggested `prune_after` for [`publish_breakers`]: rows of a process silent this long go.
pub const PRUNE_AFTER: Duration = Duration::from_secs(600);

/// Which of a channel's providers this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderRole {
    Primary,
    Secondary,
}

/// A circuit breaker's state. The order is severity: `Closed < HalfOpen < Open`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    Closed,
    HalfOpen,
    Open,
}

/// A value in `provider_breakers` that is not one of an enum's names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {value:?}")]
pub struct UnknownValue {
    what: &'static str,
    value: String,
}

impl ProviderRole {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderRole::Primary => "primary",
            ProviderRole::Secondary => "secondary",
        }
    }
}

impl FromStr for ProviderRole {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "primary" => Ok(ProviderRole::Primary),
            "secondary" => Ok(ProviderRole::Secondary),
            other => Err(unknown("provider role", other)),
        }
    }
}

impl BreakerState {
    /// Every state, for listing each one (e.g. a gauge per state).
    pub const ALL: [BreakerState; 3] = [
        BreakerState::Closed,
        BreakerState::Open,
        BreakerState::HalfOpen,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::HalfOpen => "half_open",
            BreakerState::Open => "open",
        }
    }
}

impl FromStr for BreakerState {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "closed" => Ok(BreakerState::Closed),
            "half_open" => Ok(BreakerState::HalfOpen),
            "open" => Ok(BreakerState::Open),
            other => Err(unknown("breaker state", other)),
        }
    }
}

fn unknown(what: &'static str, value: &str) -> UnknownValue {
    UnknownValue {
        what,
        value: value.to_owned(),
    }
}

/// One process's breaker of one provider, as it publishes it. Counters are the process's own
/// since it started.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BreakerReport {
    pub provider: String,
    pub channel: Channel,
    pub role: ProviderRole,
    #[serde(flatten)]
    pub breaker: BreakerSnapshot,
    /// The send-rate limit this process was configured with, if any.
    pub rate_limit_per_second: Option<f64>,
}

/// A provider across the processes that reported it recently.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ProviderStatus {
    pub provider: String,
    pub channel: Channel,
    pub role: ProviderRole,
    /// The worst state among the processes: open > half_open > closed.
    pub state: BreakerState,
    pub open_processes: i64,
    /// The largest among the processes.
    pub consecutive_failures: i32,
    /// Sums over the processes.
    pub failures: i64,
    pub successes: i64,
    pub rejected: i64,
    /// The earliest `opened_at` of the processes whose breaker is open now.
    pub opened_at: Option<DateTime<Utc>>,
    /// The send-rate limit in force (messages/s, shared by every process), when any of the
    /// processes sends under one. Each process's own setting is in its row: where they differ,
    /// the limit in force is the one of the process that sent its first message last (before
    /// any message went, a process's own).
    pub rate_limit_per_second: Option<f64>,
    pub processes: Vec<ProcessBreaker>,
}

/// One process's row of a [`ProviderStatus`].
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ProcessBreaker {
    pub process_id: String,
    pub state: BreakerState,
    pub consecutive_failures: i32,
    pub failures: i64,
    pub successes: i64,
    pub rejected: i64,
    pub opened_at: Option<DateTime<Utc>>,
    /// The send-rate limit this process was configured with (`null`: none).
    pub rate_limit_per_second: Option<f64>,
    pub updated_at: DateTime<Utc>,
}

/// Upsert this process's reports (one statement: one row per provider, the last report of a
/// provider given twice wins) and delete the rows of any process, this one's other providers
/// included, not refreshed for `prune_after`.
pub async fn publish_breakers(
    pool: &PgPool,
    process_id: &str,
    reports: &[BreakerReport],
    prune_after: Duration,
) -> Result<(), sqlx::Error> {
    let latest: BTreeMap<&str, &BreakerReport> =
        reports.iter().map(|r| (r.provider.as_str(), r)).collect();
    let reports: Vec<&BreakerReport> = latest.into_values().collect();
    let column = |f: fn(&BreakerReport) -> &str| reports.iter().map(|r| f(r)).collect::<Vec<_>>();
    sqlx::query(PUBLISH)
        .bind(process_id)
        .bind(column(|r| &r.provider))
        .bind(column(|r| r.channel.as_str()))
        .bind(column(|r| r.role.as_str()))
        .bind(column(|r| r.breaker.state.as_str()))
        .bind(
            reports
                .iter()
                .map(|r| r.breaker.consecutive_failures)
                .collect::<Vec<_>>(),
        )
        .bind(
            reports
                .iter()
                .map(|r| r.breaker.failures)
                .collect::<Vec<_>>(),
        )
        .bind(
            reports
                .iter()
                .map(|r| r.breaker.successes)
                .collect::<Vec<_>>(),
        )
        .bind(
            reports
                .iter()
                .map(|r| r.breaker.rejected)
                .collect::<Vec<_>>(),
        )
        .bind(
            reports
                .iter()
                .map(|r| r.breaker.opened_at)
                .collect::<Vec<_>>(),
        )
        .bind(prune_after.as_secs_f64())
        .bind(
            reports
                .iter()
                .map(|r| r.rate_limit_per_second)
                .collect::<Vec<_>>(),
        )
        .execute(pool)
        .await?;
    Ok(())
}

/// Delete the rows of `process_id`: it stopped, and its breakers no longer decide anything.
pub async fn withdraw_breakers(pool: &PgPool, process_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM provider_breakers WHERE process_id = $1")
        .bind(process_id)
        .execute(pool)
        .await?;
    Ok(())
}

/// Per provider (by name): the worst state among the processes that reported within
/// `fresh_within`, their counters summed, and each process's row. Providers no process reported
/// recently are left out.
pub async fn breaker_states(
    pool: &PgPool,
    fresh_within: Duration,
) -> Result<Vec<ProviderStatus>, sqlx::Error> {
    let rows: Vec<Row> = sqlx::query_as(FRESH_ROWS)
        .bind(fresh_within.as_secs_f64())
        .fetch_all(pool)
        .await?;
    let mut providers: Vec<ProviderStatus> = Vec::new();
    for row in rows {
        let (channel, role, process) = row.decode()?;
        let in_force = row.rate_limit_in_force;
        match providers.last_mut() {
            Some(status) if status.provider == row.provider => status.add(process, in_force),
            _ => providers.push(ProviderStatus::first(
                row.provider,
                channel,
                role,
                process,
                in_force,
            )),
        }
    }
    Ok(providers)
}

impl ProviderStatus {
    fn first(
        provider: String,
        channel: Channel,
        role: ProviderRole,
        process: ProcessBreaker,
        in_force: Option<f64>,
    ) -> Self {
        let mut status = ProviderStatus {
            provider,
            channel,
            role,
            state: BreakerState::Closed,
            open_processes: 0,
            consecutive_failures: 0,
            failures: 0,
            successes: 0,
            rejected: 0,
            opened_at: None,
            rate_limit_per_second: None,
            processes: Vec::new(),
        };
        status.add(process, in_force);
        status
    }

    /// Count `process` in; `in_force` is the provider's shared rate-limit row, if it has one.
    fn add(&mut self, process: ProcessBreaker, in_force: Option<f64>) {
        self.state = self.state.max(process.state);
        if process.state == BreakerState::Open {
            self.open_processes += 1;
            self.opened_at = match (self.opened_at, process.opened_at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        if process.rate_limit_per_second.is_some() {
            // No shared row until a process's first message under the limit writes it.
            self.rate_limit_per_second = in_force.or(process.rate_limit_per_second);
        }
        self.consecutive_failures = self.consecutive_failures.max(process.consecutive_failures);
        self.failures += process.failures;
        self.successes += process.successes;
        self.rejected += process.rejected;
        self.processes.push(process);
    }
}

#[derive(sqlx::FromRow)]
struct Row {
    provider: String,
    process_id: String,
    channel: String,
    role: String,
    state: String,
    consecutive_failures: i32,
    failures: i64,
    successes: i64,
    rejected: i64,
    opened_at: Option<DateTime<Utc>>,
    rate_limit_per_second: Option<f64>,
    updated_at: DateTime<Utc>,
    /// `provider_rate_limits.per_second` of the provider.
    rate_limit_in_force: Option<f64>,
}

impl Row {
    fn decode(&self) -> Result<(Channel, ProviderRole, ProcessBreaker), sqlx::Error> {
        let decode = |e: &dyn std::fmt::Display| sqlx::Error::Decode(e.to_string().into());
        let channel = Channel::from_str(&self.channel).map_err(|e| decode(&e))?;
        let role = ProviderRole::from_str(&self.role).map_err(|e| decode(&e))?;
        let state = BreakerState::from_str(&self.state).map_err(|e| decode(&e))?;
        let process = ProcessBreaker {
            process_id: self.process_id.clone(),
            state,
            consecutive_failures: self.consecutive_failures,
            failures: self.failures,
            successes: self.successes,
            rejected: self.rejected,
            opened_at: self.opened_at,
            rate_limit_per_second: self.rate_limit_per_second,
            updated_at: self.updated_at,
        };
        Ok((channel, role, process))
    }
}

/// The upsert and the prune in one statement. The prune spares the rows being upserted: one
/// statement must not both update and delete a row.
const PUBLISH: &str = "
WITH upserted AS (
    INSERT INTO provider_breakers AS b
           (provider, process_id, channel, role, state, consecutive_failures, failures,
            successes, rejected, opened_at, rate_limit_per_second, updated_at)
    SELECT p, $1, c, r, s, cf, f, su, rj, oa, rl, now()
      FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::int[], $7::bigint[],
                  $8::bigint[], $9::bigint[], $10::timestamptz[], $12::float8[])
           AS t(p, c, r, s, cf, f, su, rj, oa, rl)
    ON CONFLICT (provider, process_id) DO UPDATE
       SET channel = EXCLUDED.channel, role = EXCLUDED.role, state = EXCLUDED.state,
           consecutive_failures = EXCLUDED.consecutive_failures, failures = EXCLUDED.failures,
           successes = EXCLUDED.successes, rejected = EXCLUDED.rejected,
           opened_at = EXCLUDED.opened_at, rate_limit_per_second = EXCLUDED.rate_limit_per_second,
           updated_at = now()
)
DELETE FROM provider_breakers
 WHERE updated_at < now() - make_interval(secs => $11::float8)
   AND NOT (process_id = $1 AND provider = ANY($2::text[]))";

/// Rows refreshed within `$1` seconds, grouped by provider; the newest row of a provider first
/// (its channel and role are the provider's).
const FRESH_ROWS: &str = "
SELECT b.provider, b.process_id, b.channel, b.role, b.state, b.consecutive_failures, b.failures,
       b.successes, b.rejected, b.opened_at, b.rate_limit_per_second, b.updated_at,
       l.per_second AS rate_limit_in_force
  FROM provider_breakers b
  LEFT JOIN provider_rate_limits l ON l.provider = b.provider
 WHERE b.updated_at >= now() - make_interval(secs => $1::float8)
 ORDER BY b.provider, b.updated_at DESC, b.process_id";
