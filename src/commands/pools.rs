//! `wedsync-jobs pools`: list pools, size them, override them (SPEC §6).

use crate::Failure;
use crate::cli::PoolsCommand;
use crate::commands::output::print_rows;
use crate::settings::Settings;
use crate::startup;
use anyhow::{Context, anyhow};
use chrono::{DateTime, TimeDelta, Utc};
use wedsync_scheduler::pools::Override;
use wedsync_scheduler::scaling::{self, PoolChanges, ScalingError};

/// Changes shown by `pools list`.
const HISTORY: i64 = 5;

pub async fn run(settings: Settings, command: PoolsCommand) -> Result<(), Failure> {
    let pool = startup::connect(&settings, 2, true).await?;
    let now = Utc::now();
    match command {
        PoolsCommand::Set {
            queue,
            size,
            ttl,
            until,
            reason,
            min,
            max,
            base,
            clear_override,
            output,
        } => {
            let expiry = match (ttl, until) {
                (Some(ttl), _) => Some(now + parse_ttl(&ttl).map_err(Failure::Usage)?),
                (None, Some(until)) => Some(
                    DateTime::parse_from_rfc3339(&until)
                        .map(|t| t.with_timezone(&Utc))
                        .map_err(|e| Failure::Usage(anyhow!("--until {until}: {e}")))?,
                ),
                (None, None) => None,
            };
            let mut changes = PoolChanges {
                min,
                max,
                base,
                override_: clear_override.then_some(None),
            };
            match (size, expiry) {
                (Some(size), Some(until)) => {
                    let reason = reason.ok_or_else(|| {
                        Failure::Usage(anyhow!("--reason is required with --ttl or --until"))
                    })?;
                    changes.override_ = Some(Some(Override {
                        size,
                        until,
                        reason,
                    }));
                }
                (None, Some(_)) => {
                    return Err(Failure::Usage(anyhow!(
                        "--ttl and --until need the override's SIZE"
                    )));
                }
                (Some(_), None) if min.is_some() || max.is_some() || base.is_some() => {
                    return Err(Failure::Usage(anyhow!(
                        "give SIZE (pins min = base = max) or --min/--max/--base, not both"
                    )));
                }
                (Some(size), None) => {
                    changes.min = Some(size);
                    changes.max = Some(size);
                    changes.base = Some(size);
                    if reason.is_some() {
                        eprintln!("note: --reason is recorded with an override (--ttl or --until)");
                    }
                }
                (None, None) => {}
            }
            let default_size = u32::try_from(settings.worker.default_concurrency).unwrap_or(0);
            let view = scaling::configure(
                &pool,
                &queue,
                &changes,
                default_size,
                settings.timezone,
                now,
            )
            .await
            .map_err(|err| match err {
                ScalingError::Invalid(_) => Failure::Usage(err.into()),
                other => Failure::Runtime(anyhow::Error::new(other).context("setting the pool")),
            })?;
            print_rows(
                &[view],
                &[
                    "queue",
                    "concurrency",
                    "desired_replicas",
                    "min",
                    "max",
                    "base",
                    "changed_at",
                ],
                output.json,
            )?;
        }
        PoolsCommand::List(output) => {
            let pools = scaling::pool_views(&pool, HISTORY, now)
                .await
                .context("reading pools")?;
            print_rows(
                &pools,
                &[
                    "queue",
                    "concurrency",
                    "desired",
                    "desired_replicas",
                    "min",
                    "max",
                    "base",
                    "paused",
                    "changed_at",
                ],
                output.json,
            )?;
        }
    }
    Ok(())
}

/// `90s`, `30m`, `6h`, `2d`.
fn parse_ttl(text: &str) -> anyhow::Result<TimeDelta> {
    let split = text.len().saturating_sub(1);
    let (number, unit) = text.split_at(split);
    let n: i64 = number
        .parse()
        .ok()
        .filter(|n| *n > 0 && *n <= 100_000)
        .ok_or_else(|| {
            anyhow!("--ttl {text}: expected a positive number and a unit s, m, h or d, e.g. 6h")
        })?;
    match unit {
        "s" => Ok(TimeDelta::seconds(n)),
        "m" => Ok(TimeDelta::minutes(n)),
        "h" => Ok(TimeDelta::hours(n)),
        "d" => Ok(TimeDelta::days(n)),
        _ => Err(anyhow!(
            "--ttl {text}: the unit must be s, m, h or d, e.g. 6h"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_takes_a_number_and_a_unit() {
        assert_eq!(parse_ttl("90m").unwrap(), TimeDelta::minutes(90));
        assert_eq!(parse_ttl("2d").unwrap(), TimeDelta::days(2));
        assert!(parse_ttl("6").is_err());
        assert!(parse_ttl("h").is_err());
        assert!(parse_ttl("-1h").is_err());
    }
}
