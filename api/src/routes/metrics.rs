//! `GET /metrics`: Prometheus text.
//!
//! Two parts: whatever the process recorded through the `metrics` facade (API latency, job
//! durations, breakers… rendered by the installed recorder's handle), then gauges read from the
//! database at scrape time. The latter are written straight from a fresh snapshot instead of being
//! set on the global recorder: a recorder keeps every series it has seen, so a queue/kind/state
//! that drained to nothing would report its last count forever.

use crate::ApiState;
use crate::error::error_chain;
use crate::routes::Route;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::formatting::{
    sanitize_label_value, write_help_line, write_type_line,
};
use std::fmt::Write;
use wedsync_kinds::messages::providers::status::{
    BreakerState, ProviderStatus, REPORT_FRESHNESS, breaker_states,
};
use wedsync_queue::{QueueStats, StateCount};

const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub fn routes() -> Vec<Route> {
    vec![("/metrics", get(render))]
}

async fn render(State(state): State<ApiState>) -> impl IntoResponse {
    let mut out = state.prometheus.render();
    match state.queue.state_counts().await {
        Ok(counts) => write_job_counts(&mut out, &counts),
        Err(err) => tracing::warn!(error = %error_chain(&err), "metrics: job counts unavailable"),
    }
    match state.queue.queue_stats().await {
        Ok(stats) => write_queue_stats(&mut out, &stats),
        Err(err) => tracing::warn!(error = %error_chain(&err), "metrics: queue stats unavailable"),
    }
    match wedsync_scheduler::scaling::scaling_rows(&state.pool).await {
        Ok(rows) => super::scaling::write_desired_replicas(&mut out, &rows),
        Err(err) => tracing::warn!(error = %error_chain(&err), "metrics: scaling unavailable"),
    }
    match breaker_states(&state.pool, REPORT_FRESHNESS).await {
        Ok(providers) => write_provider_breakers(&mut out, &providers),
        Err(err) => tracing::warn!(error = %error_chain(&err), "metrics: breakers unavailable"),
    }
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], out)
}

fn gauge_header(out: &mut String, name: &str, help: &str) {
    write_help_line(out, name, None, None, help);
    write_type_line(out, name, None, None, "gauge");
}

fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: f64) {
    let labels: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", sanitize_label_value(v)))
        .collect();
    let _ = writeln!(out, "{name}{{{}}} {value}", labels.join(","));
}

/// `wedsync_jobs{queue,kind,state}`: unfinished jobs, and jobs finished in the last hour.
pub fn write_job_counts(out: &mut String, counts: &[StateCount]) {
    let name = "wedsync_jobs";
    gauge_header(
        out,
        name,
        "Jobs by queue, kind and state (finished states: last hour).",
    );
    for c in counts {
        let labels = [
            ("queue", c.queue.as_str()),
            ("kind", &c.kind),
            ("state", &c.state),
        ];
        sample(out, name, &labels, c.n as f64);
    }
}

/// Pool size, pause flag and lag per queue.
pub fn write_queue_stats(out: &mut String, stats: &[QueueStats]) {
    let concurrency = "wedsync_pool_concurrency";
    gauge_header(
        out,
        concurrency,
        "Per-process concurrency of each queue's pool.",
    );
    for s in stats {
        if let Some(n) = s.concurrency {
            sample(out, concurrency, &[("queue", &s.queue)], f64::from(n));
        }
    }
    let paused = "wedsync_queue_paused";
    gauge_header(out, paused, "1 when the queue is paused.");
    for s in stats {
        sample(
            out,
            paused,
            &[("queue", &s.queue)],
            f64::from(u8::from(s.paused)),
        );
    }
    let lag = "wedsync_queue_lag_seconds";
    gauge_header(out, lag, "Age of the oldest available job of each queue.");
    for s in stats {
        sample(
            out,
            lag,
            &[("queue", &s.queue)],
            s.lag_seconds.unwrap_or(0.0),
        );
    }
}

/// A gauge with one sample per provider: its name, its help, its value.
type ProviderGauge = (&'static str, &'static str, fn(&ProviderStatus) -> f64);

/// Each provider's circuit breaker over the worker processes that reported it recently: the
/// worst state (1 for it, 0 for the others), how many processes have it open, the longest run
/// of failures, and the processes' counters summed (a gauge: a process that goes away takes
/// its share with it).
pub fn write_provider_breakers(out: &mut String, providers: &[ProviderStatus]) {
    let state = "wedsync_provider_breaker_state";
    gauge_header(
        out,
        state,
        "1 for the provider's worst circuit-breaker state over the worker processes.",
    );
    for p in providers {
        for s in BreakerState::ALL {
            let value = f64::from(u8::from(p.state == s));
            sample(
                out,
                state,
                &[("provider", &p.provider), ("state", s.as_str())],
                value,
            );
        }
    }
    let per_provider: [ProviderGauge; 5] = [
        (
            "wedsync_provider_breaker_open_processes",
            "Worker processes whose breaker of the provider is open.",
            |p| p.open_processes as f64,
        ),
        (
            "wedsync_provider_consecutive_failures",
            "The longest current run of failures of the provider in one process.",
            |p| f64::from(p.consecutive_failures),
        ),
        (
            "wedsync_provider_failures",
            "Failed sends (the provider was unavailable), summed over processes.",
            |p| p.failures as f64,
        ),
        (
            "wedsync_provider_successes",
            "Sends the provider answered, summed over processes.",
            |p| p.successes as f64,
        ),
        (
            "wedsync_provider_rejected",
            "Sends refused by an open breaker, summed over processes.",
            |p| p.rejected as f64,
        ),
    ];
    for (name, help, value) in per_provider {
        gauge_header(out, name, help);
        for p in providers {
            sample(out, name, &[("provider", &p.provider)], value(p));
        }
    }
    let limit = "wedsync_provider_rate_limit_per_second";
    gauge_header(
        out,
        limit,
        "The send-rate limit in force, shared by every process (providers without one: no sample).",
    );
    for p in providers {
        if let Some(per_second) = p.rate_limit_per_second {
            sample(out, limit, &[("provider", &p.provider)], per_second);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_counts_render_as_labelled_gauges() {
        let mut out = String::new();
        let count = StateCount {
            queue: "email".into(),
            kind: "send \"x\"".into(),
            state: "available".into(),
            n: 3,
        };
        write_job_counts(&mut out, &[count]);
        assert!(out.contains("# TYPE wedsync_jobs gauge"));
        assert!(
            out.contains(r#"wedsync_jobs{queue="email",kind="send \"x\"",state="available"} 3"#)
        );
    }

    #[test]
    fn a_half_open_breaker_is_the_one_state_set_to_one() {
        use wedsync_kinds::messages::providers::status::ProviderRole;
        use wedsync_kinds::suppression::Channel;
        let status = ProviderStatus {
            provider: "smtp".into(),
            channel: Channel::Email,
            role: ProviderRole::Primary,
            state: BreakerState::HalfOpen,
            open_processes: 0,
            consecutive_failures: 4,
            failures: 9,
            successes: 20,
            rejected: 2,
            opened_at: None,
            rate_limit_per_second: Some(50.0),
            processes: Vec::new(),
        };
        let unlimited = ProviderStatus {
            provider: "sms".into(),
            rate_limit_per_second: None,
            ..status.clone()
        };
        let mut out = String::new();
        write_provider_breakers(&mut out, &[status, unlimited]);
        for line in [
            r#"wedsync_provider_breaker_state{provider="smtp",state="half_open"} 1"#,
            r#"wedsync_provider_breaker_state{provider="smtp",state="closed"} 0"#,
            r#"wedsync_provider_breaker_state{provider="smtp",state="open"} 0"#,
            r#"wedsync_provider_breaker_open_processes{provider="smtp"} 0"#,
            r#"wedsync_provider_consecutive_failures{provider="smtp"} 4"#,
            r#"wedsync_provider_failures{provider="smtp"} 9"#,
            r#"wedsync_provider_successes{provider="smtp"} 20"#,
            r#"wedsync_provider_rejected{provider="smtp"} 2"#,
            r#"wedsync_provider_rate_limit_per_second{provider="smtp"} 50"#,
        ] {
            assert!(out.lines().any(|l| l == line), "no {line} in\n{out}");
        }
        assert!(
            !out.contains(r#"wedsync_provider_rate_limit_per_second{provider="sms"}"#),
            "a provider without a limit has no limit sample:\n{out}"
        );
        assert!(out.contains("# TYPE wedsync_provider_rejected gauge"));
    }
}
