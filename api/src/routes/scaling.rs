//! `GET /v1/scaling` (operator): desired replicas per pool, for Kubernetes/KEDA (SPEC §6).
//!
//! The shape is what KEDA's metrics-api scaler reads with a `valueLocation`, e.g.
//! `pools.photos.desired_replicas` (see `deploy/`). The same numbers come from the
//! `wedsync_scaling` view (KEDA's postgresql scaler) and the `wedsync_pool_desired_replicas`
//! gauge of `/metrics` (Prometheus scaler).

use crate::ApiState;
use crate::auth::Operator;
use crate::error::ApiError;
use crate::extract::Json;
use crate::routes::Route;
use axum::extract::State;
use axum::routing::get;
use metrics_exporter_prometheus::formatting::{
    sanitize_label_value, write_help_line, write_type_line,
};
use serde_json::{Map, Value, json};
use std::fmt::Write;
use wedsync_scheduler::scaling::{ScalingRow, scaling_rows};

pub fn routes() -> Vec<Route> {
    vec![("/v1/scaling", get(show))]
}

async fn show(State(state): State<ApiState>, _: Operator) -> Result<Json<Value>, ApiError> {
    let rows = scaling_rows(&state.pool).await?;
    Ok(Json(scaling_document(&rows)))
}

/// `{"pools": {"<queue>": {"desired_replicas", "concurrency", "paused"}}}`.
pub fn scaling_document(rows: &[ScalingRow]) -> Value {
    let pools: Map<String, Value> = rows
        .iter()
        .map(|r| {
            let pool = json!({
                "desired_replicas": r.desired_replicas,
                "concurrency": r.concurrency,
                "paused": r.paused,
            });
            (r.queue.clone(), pool)
        })
        .collect();
    json!({ "pools": pools })
}

/// `wedsync_pool_desired_replicas{queue}` for `/metrics`.
pub fn write_desired_replicas(out: &mut String, rows: &[ScalingRow]) {
    let name = "wedsync_pool_desired_replicas";
    write_help_line(
        out,
        name,
        None,
        None,
        "Worker processes each pool's demand needs (0 when paused).",
    );
    write_type_line(out, name, None, None, "gauge");
    for r in rows {
        let _ = writeln!(
            out,
            "{name}{{queue=\"{}\"}} {}",
            sanitize_label_value(&r.queue),
            r.desired_replicas
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keda_reads_replicas_under_the_queue_name() {
        let rows = [ScalingRow {
            queue: "photos".into(),
            desired_replicas: 3,
            concurrency: 16,
            paused: false,
        }];
        let doc = scaling_document(&rows);
        assert_eq!(
            doc.pointer("/pools/photos/desired_replicas"),
            Some(&json!(3))
        );
        let mut out = String::new();
        write_desired_replicas(&mut out, &rows);
        assert!(out.contains("# TYPE wedsync_pool_desired_replicas gauge"));
        assert!(out.contains("wedsync_pool_desired_replicas{queue=\"photos\"} 3"));
    }
}
