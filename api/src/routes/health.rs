//! Liveness and readiness.
//!
//! `/healthz` answers as long as the process serves HTTP; it touches nothing, so a slow database
//! never gets a healthy process restarted. `/readyz` says whether this process can do useful work:
//! the database answers, every migration this binary knows is applied (a binary newer than its
//! schema must not take traffic; an older one beside a newer schema may), the photo storage
//! answers when this process takes uploads, and, when configured, no queue lags beyond the bound.

use crate::ApiState;
use crate::error::{ApiError, error_chain};
use crate::extract::Json;
use crate::routes::Route;
use axum::extract::State;
use axum::routing::get;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::Duration;

/// How long readiness waits for the database before calling it down.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

pub fn routes() -> Vec<Route> {
    vec![("/healthz", get(healthz)), ("/readyz", get(readyz))]
}

async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

async fn readyz(State(state): State<ApiState>) -> Result<Json<Value>, ApiError> {
    let database = timed(database(&state)).await;
    let migrations = match &database {
        Ok(()) => timed(migrations(&state)).await,
        Err(_) => Err("database unavailable".to_owned()),
    };
    let lag = match &database {
        Ok(()) => timed(queue_lag(&state)).await,
        Err(_) => Err("database unavailable".to_owned()),
    };
    let storage = timed(storage(&state)).await;
    let ready = database.is_ok() && migrations.is_ok() && lag.is_ok() && storage.is_ok();
    let checks = json!({
        "database": outcome(&database.map(|()| json!("ok"))),
        "migrations": outcome(&migrations.map(|()| json!("ok"))),
        "queue_lag": outcome(&lag),
        "storage": outcome(&storage),
    });
    if ready {
        Ok(Json(json!({ "status": "ready", "checks": checks })))
    } else {
        Err(ApiError::NotReady {
            detail: "a dependency is not ready; see `checks`".to_owned(),
            checks,
        })
    }
}

fn outcome(result: &Result<Value, String>) -> Value {
    match result {
        Ok(value) => value.clone(),
        Err(reason) => json!({ "error": reason }),
    }
}

/// Failing checks say what failed in words safe to publish; the full error is logged.
async fn timed<T>(check: impl Future<Output = Result<T, String>>) -> Result<T, String> {
    tokio::time::timeout(CHECK_TIMEOUT, check)
        .await
        .unwrap_or_else(|_| Err(format!("timed out after {CHECK_TIMEOUT:?}")))
}

fn logged(what: &'static str) -> impl Fn(sqlx::Error) -> String {
    move |err| {
        tracing::warn!(error = %error_chain(&err), "readiness: {what} failed");
        format!("{what} failed")
    }
}

/// Object storage answers a metadata request (a missing key is an answer). `"not configured"`
/// for a process that takes no uploads.
async fn storage(state: &ApiState) -> Result<Value, String> {
    let Some(photos) = &state.photos else {
        return Ok(json!("not configured"));
    };
    match photos.storage.exists(STORAGE_PROBE_KEY).await {
        Ok(_) => Ok(json!("ok")),
        Err(err) => {
            tracing::warn!(error = %error_chain(&err), "readiness: storage check failed");
            Err("storage check failed".to_owned())
        }
    }
}

/// A key no upload ever uses: only whether the store answers matters.
const STORAGE_PROBE_KEY: &str = "readyz/probe";

async fn database(state: &ApiState) -> Result<(), String> {
    sqlx::query("SELECT 1")
        .execute(&state.pool)
        .await
        .map(drop)
        .map_err(logged("database query"))
}

async fn migrations(state: &ApiState) -> Result<(), String> {
    let applied: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
            .fetch_all(&state.pool)
            .await
            .map_err(logged("reading applied migrations"))?;
    let applied: BTreeSet<i64> = applied.into_iter().collect();
    let missing: Vec<i64> = wedsync_db::MIGRATOR
        .iter()
        .map(|m| m.version)
        .filter(|v| !applied.contains(v))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!("migrations not applied: {missing:?}"))
    }
}

/// Lag per queue; an error only when a bound is set and exceeded.
async fn queue_lag(state: &ApiState) -> Result<Value, String> {
    let stats = state.queue.queue_stats().await.map_err(|err| {
        tracing::warn!(error = %error_chain(&err), "readiness: queue stats failed");
        "reading queue stats failed".to_owned()
    })?;
    let lag: serde_json::Map<String, Value> = stats
        .iter()
        .map(|s| (s.queue.clone(), json!(s.lag_seconds.unwrap_or(0.0))))
        .collect();
    let Some(bound) = state.ready_max_lag else {
        return Ok(Value::Object(lag));
    };
    let lagging: Vec<&str> = stats
        .iter()
        .filter(|s| s.lag_seconds.unwrap_or(0.0) > bound.as_secs_f64())
        .map(|s| s.queue.as_str())
        .collect();
    if lagging.is_empty() {
        Ok(Value::Object(lag))
    } else {
        Err(format!("queues lagging more than {bound:?}: {lagging:?}"))
    }
}
