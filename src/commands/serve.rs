//! The long-running roles: `all`, `api`, `worker`, `scheduler`.

use crate::Failure;
use crate::cli::WorkerArgs;
use crate::settings::Settings;
use crate::{shutdown, startup};
use anyhow::Context;
use metrics_exporter_prometheus::PrometheusHandle;
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use wedsync_kinds::AppContext;
use wedsync_kinds::messages::providers::BreakerPublisher;
use wedsync_kinds::photos::pipeline::Limits as PhotoLimits;
use wedsync_kinds::storage::Storage;
use wedsync_metrics::{EventWriter, EventWriterConfig};
use wedsync_queue::Queue;
use wedsync_worker::{Worker, WorkerConfig};

/// How often a scheduler checks for leadership and due fires (it also wakes at the next fire).
const SCHEDULER_INTERVAL: Duration = Duration::from_secs(1);

/// API + workers for every queue + scheduler in one process.
pub async fn all(settings: Settings, prometheus: PrometheusHandle) -> Result<(), Failure> {
    let entries = schedule_entries(&settings)?;
    let pool = startup::connect(&settings, 32, true).await?;
    seed_pools(&pool, &settings).await?;
    let stop = shutdown::on_signal();
    let listener = bind(&settings).await?;
    let key = crate::commands::admin::embedded_admin_key(&pool, &settings).await?;
    println!("WedSync Jobs is running (API, workers, scheduler).");
    println!(
        "  API:        http://{}",
        listener.local_addr().context("reading the bound address")?
    );
    println!("  admin key:  {key}");
    println!(
        "  try:        curl -H 'Authorization: Bearer {key}' http://{}/v1/queues",
        listener.local_addr().context("reading the bound address")?
    );
    let api = serve_api(
        pool.clone(),
        listener,
        prometheus,
        &settings,
        entries.clone(),
        stop.clone(),
    );
    let (app, breakers) = app_context(&settings, pool.clone()).await?;
    let worker_pool = pool.clone();
    let worker = async {
        let ran = run_worker(
            worker_pool,
            app,
            worker_config(&settings, &WorkerArgs::default()),
            stop.clone(),
        )
        .await;
        breakers.withdraw().await;
        ran
    };
    let scheduler = async {
        wedsync_scheduler::run_with_entries(pool, entries, SCHEDULER_INTERVAL, stop.clone()).await;
        Ok(())
    };
    // When one part ends (on SIGTERM, or because it failed), stop the others too.
    let stopping = |part: Result<(), Failure>| {
        stop.cancel();
        part
    };
    let (api, worker, scheduler) = tokio::join!(
        async { stopping(api.await) },
        async { stopping(worker.await) },
        async { stopping(scheduler.await) },
    );
    api.and(worker).and(scheduler)
}

pub async fn api(settings: Settings, prometheus: PrometheusHandle) -> Result<(), Failure> {
    let pool = startup::connect(&settings, 16, true).await?;
    let stop = shutdown::on_signal();
    let listener = bind(&settings).await?;
    tracing::info!(listen = %settings.listen, "API listening");
    let entries = schedule_entries(&settings)?;
    serve_api(pool, listener, prometheus, &settings, entries, stop).await
}

pub async fn worker(settings: Settings, args: WorkerArgs) -> Result<(), Failure> {
    let pool = startup::connect(&settings, 16, true).await?;
    seed_pools(&pool, &settings).await?;
    let config = worker_config(&settings, &args);
    let (app, breakers) = app_context(&settings, pool.clone()).await?;
    let ran = run_worker(pool, app, config, shutdown::on_signal()).await;
    breakers.withdraw().await;
    ran
}

pub async fn scheduler(settings: Settings) -> Result<(), Failure> {
    let pool = startup::connect(&settings, 4, true).await?;
    seed_pools(&pool, &settings).await?;
    let entries = schedule_entries(&settings)?;
    wedsync_scheduler::run_with_entries(pool, entries, SCHEDULER_INTERVAL, shutdown::on_signal())
        .await;
    Ok(())
}

/// The `[[schedule]]` entries of the configuration, plus the built-in nightly retention cleanup
/// (03:30 local) unless the configuration schedules `retention_cleanup` itself, and the built-in
/// pool scaling evaluation every minute unless it schedules `pool_scaling` itself. A bad cron
/// expression or an unknown kind is a usage error naming the entry.
fn schedule_entries(settings: &Settings) -> Result<Vec<wedsync_scheduler::Entry>, Failure> {
    let registry = wedsync_kinds::register_all();
    let mut entries = settings
        .schedule
        .iter()
        .map(|e| {
            if registry.kind(&e.kind).is_none() {
                return Err(Failure::Usage(anyhow::anyhow!(
                    "schedule entry `{}`: unknown kind `{}`",
                    e.name,
                    e.kind
                )));
            }
            wedsync_scheduler::Entry::parse(
                e.name.clone(),
                &e.cron,
                e.timezone.unwrap_or(settings.timezone),
                e.kind.clone(),
                e.args.clone(),
                e.queue.clone(),
            )
            .map_err(|err| Failure::Usage(err.into()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let retention = <wedsync_kinds::RetentionCleanup as wedsync_queue::Job>::KIND;
    if !entries.iter().any(|e| e.kind == retention) {
        let nightly = wedsync_scheduler::Entry::parse(
            "nightly-retention",
            "0 30 3 * * *",
            settings.timezone,
            retention,
            serde_json::json!({}),
            <wedsync_kinds::RetentionCleanup as wedsync_queue::Job>::QUEUE,
        )
        .map_err(|err| Failure::Runtime(err.into()))?;
        entries.push(nightly);
    }
    entries.extend(crate::commands::metrics_schedule::hourly_metrics_rollup(
        &entries,
    )?);
    let scaling = <wedsync_kinds::PoolScaling as wedsync_queue::Job>::KIND;
    if !entries.iter().any(|e| e.kind == scaling) {
        entries.push(pool_scaling_entry(settings).map_err(|err| Failure::Runtime(err.into()))?);
    }
    Ok(entries)
}

/// `pool-scaling`: evaluate every pool at second 0 of every minute (SPEC §6), with the rules on
/// the wall clock of `WEDSYNC_TIMEZONE`. The entry itself runs on UTC: every minute is a minute
/// there, while in a local zone the hour a DST fall-back repeats would be skipped.
fn pool_scaling_entry(
    settings: &Settings,
) -> Result<wedsync_scheduler::Entry, wedsync_scheduler::ScheduleError> {
    let job = wedsync_kinds::PoolScaling {
        timezone: Some(settings.timezone.name().to_owned()),
    };
    wedsync_scheduler::Entry::parse(
        "pool-scaling",
        "0 * * * * *",
        chrono_tz::UTC,
        <wedsync_kinds::PoolScaling as wedsync_queue::Job>::KIND,
        serde_json::to_value(job).unwrap_or_default(),
        <wedsync_kinds::PoolScaling as wedsync_queue::Job>::QUEUE,
    )
}

/// Give each `[queues.<name>]` with `min`, `max` or `base` its pool unless it has one. Missing
/// values: min 0, base = the queue's concurrency, max = the larger of base and concurrency.
async fn seed_pools(pool: &PgPool, settings: &Settings) -> Result<(), Failure> {
    for (name, queue) in settings.queues.iter().filter(|(_, q)| q.has_pool()) {
        let concurrency = u32::try_from(settings.queue_concurrency(name)).unwrap_or(0);
        let base = queue.base.unwrap_or(concurrency);
        let config = wedsync_scheduler::pools::PoolConfig {
            min: queue.min.unwrap_or(0),
            max: queue.max.unwrap_or(base.max(concurrency)),
            base,
        };
        let created = wedsync_scheduler::scaling::seed_pool(pool, name, config)
            .await
            .with_context(|| format!("creating the pool of queue `{name}`"))?;
        if created {
            tracing::info!(queue = %name, min = config.min, max = config.max, base = config.base,
                           "pool created from the configuration");
        }
    }
    Ok(())
}

async fn bind(settings: &Settings) -> Result<tokio::net::TcpListener, Failure> {
    tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("binding WEDSYNC_LISTEN={}", settings.listen))
        .map_err(Failure::Usage)
}

async fn serve_api(
    pool: PgPool,
    listener: tokio::net::TcpListener,
    prometheus: PrometheusHandle,
    settings: &Settings,
    schedules: Vec<wedsync_scheduler::Entry>,
    stop: CancellationToken,
) -> Result<(), Failure> {
    let kinds: Vec<_> = wedsync_kinds::register_all().kinds().cloned().collect();
    let photos = wedsync_api::PhotoUploads {
        storage: photo_storage(settings)?,
        max_upload_bytes: settings.photos.max_upload_bytes,
    };
    let mut state = wedsync_api::ApiState::new(pool.clone(), kinds, prometheus)
        .with_default_concurrency(settings.worker.default_concurrency)
        .with_schedules(schedules)
        .with_timezone(settings.timezone)
        .with_photo_uploads(photos)
        .with_signing_key(crate::commands::signing::unsubscribe_key(settings, &pool).await?);
    if let Some(url) = &settings.public_url {
        state = state.with_public_url(url.as_str());
    }
    // The providers' tokens sign their webhooks (`/v1/sms/…`).
    let sms_urls = [&settings.sms_url, &settings.messages.sms_secondary_url];
    state = state.with_sms_webhook_tokens(
        wedsync_kinds::messages::sms_webhook::WebhookTokens::from_provider_urls(
            sms_urls.into_iter().flatten(),
        ),
    );
    let events = settings.metric_events.then(|| {
        let (sink, writer) = EventWriter::spawn(pool, EventWriterConfig::default());
        state = state.clone().with_events(sink);
        writer
    });
    let served = wedsync_api::serve(listener, state, stop.cancelled_owned()).await;
    // In-flight requests are done: write their events before the process ends.
    if let Some(writer) = events {
        writer.finish().await;
    }
    served.context("serving the API")?;
    Ok(())
}

fn worker_config(settings: &Settings, args: &WorkerArgs) -> WorkerConfig {
    let queues = if args.queues.is_empty() {
        wedsync_kinds::register_all()
            .queues()
            .iter()
            .map(|q| q.to_string())
            .collect()
    } else {
        args.queues.clone()
    };
    let mut config = WorkerConfig::new(queues);
    config.default_concurrency = args
        .concurrency
        .unwrap_or(settings.worker.default_concurrency);
    config.poll_interval = settings.worker.poll_interval;
    config.heartbeat_interval = settings.worker.heartbeat_interval;
    config.heartbeat_timeout = settings.worker.heartbeat_timeout;
    config.shutdown_grace = settings.worker.shutdown_grace;
    config.run_log = args.run_log.clone();
    if !settings.metric_events {
        config.metric_events = None;
    }
    config
}

/// Photo storage: `WEDSYNC_STORAGE_URL`, else `<data dir>/storage` (the embedded default).
fn photo_storage(settings: &Settings) -> Result<Storage, Failure> {
    match &settings.storage_url {
        Some(url) => Storage::from_url(url)
            .map_err(|err| Failure::Usage(anyhow::Error::new(err).context("WEDSYNC_STORAGE_URL"))),
        None => {
            let dir = settings.data_dir.join("storage");
            Storage::local(&dir).map_err(|err| {
                Failure::Runtime(
                    anyhow::Error::new(err).context("creating the photo storage folder"),
                )
            })
        }
    }
}

/// What job handlers share: the pool, photo storage and limits; and the task publishing the
/// providers' breakers, to withdraw once the worker has stopped.
async fn app_context(
    settings: &Settings,
    pool: PgPool,
) -> Result<(AppContext, BreakerPublisher), Failure> {
    let mut messages = crate::commands::messages::context(settings, &pool)?;
    messages.signing_key = crate::commands::signing::unsubscribe_key(settings, &pool).await?;
    let breakers = messages
        .providers
        .spawn_publisher(pool.clone(), wedsync_worker::default_worker_id());
    let app = AppContext::new(pool)
        .with_storage(photo_storage(settings)?)
        .with_photo_limits(PhotoLimits {
            max_pixels: settings.photos.max_pixels,
        })
        .with_messages(messages);
    Ok((app, breakers))
}

async fn run_worker(
    pool: PgPool,
    app: AppContext,
    config: WorkerConfig,
    stop: CancellationToken,
) -> Result<(), Failure> {
    let bookkeeping = startup::sibling_pool(&pool, config.queues.len() as u32 * 2 + 6);
    let worker = Worker::new(
        Queue::new(bookkeeping),
        Arc::new(wedsync_kinds::register_all()),
        app,
        config,
    );
    worker.run(stop).await.context("running the worker")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, TimeZone, Utc};

    fn entry(name: &str) -> wedsync_scheduler::Entry {
        let settings = Settings::from_env_and_file(
            |name| (name == "WEDSYNC_TIMEZONE").then(|| "Europe/London".to_owned()),
            None,
        )
        .unwrap();
        let entries = schedule_entries(&settings).unwrap();
        entries.into_iter().find(|e| e.name == name).unwrap()
    }

    fn utc(h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 10, 25, h, mi, 0).unwrap()
    }

    /// On 2026-10-25 London's 01:00–02:00 comes twice (00:00–02:00 UTC). The built-in entries
    /// that run every hour or minute fire through both: a rollup skipped there would be an
    /// hour never aggregated, and pools would not be evaluated for an hour.
    #[test]
    fn the_hourly_and_minutely_built_ins_fire_through_a_repeated_local_hour() {
        let rollup = entry(crate::commands::metrics_schedule::NAME);
        assert_eq!(
            wedsync_scheduler::next_fires(&rollup, utc(0, 0), 4),
            [utc(0, 5), utc(1, 5), utc(2, 5), utc(3, 5)]
        );
        let scaling = entry("pool-scaling");
        let fires = wedsync_scheduler::next_fires(&scaling, utc(0, 58), 4);
        assert_eq!(fires, [utc(0, 59), utc(1, 0), utc(1, 1), utc(1, 2)]);
        // The nightly retention stays on the local clock: 03:30 in London is 03:30 UTC in
        // winter.
        let retention = entry("nightly-retention");
        assert_eq!(
            wedsync_scheduler::next_fires(&retention, utc(0, 0), 1),
            [utc(3, 30)]
        );
    }
}
