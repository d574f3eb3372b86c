//! The scheduler process: elects one leader through a PostgreSQL advisory lock held on its own
//! connection. Cron entries and pool rules (SPEC §6) are the next step; for now the leader only
//! holds leadership, so that several schedulers can already run side by side.

use sqlx::{Connection, PgConnection, PgPool};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Advisory lock key of the scheduler leader.
const LEADER_LOCK: i64 = 7_460_327_412;

/// Try to become leader every `interval` until `stop`; a leader keeps its lock (and connection)
/// until it stops or its connection dies, when another scheduler takes over.
pub async fn run(pool: PgPool, interval: Duration, stop: CancellationToken) {
    let mut leader: Option<PgConnection> = None;
    loop {
        match leader.as_mut() {
            Some(conn) => {
                if conn.ping().await.is_err() {
                    tracing::warn!("scheduler lost its leader connection");
                    leader = None;
                }
            }
            None => match try_lead(&pool).await {
                Ok(Some(conn)) => {
                    tracing::info!("this scheduler is the leader");
                    leader = Some(conn);
                }
                Ok(None) => {}
                Err(err) => tracing::warn!(error = %err, "leader election failed"),
            },
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(interval) => {}
        }
    }
    if let Some(conn) = leader {
        let _ = conn.close().await;
    }
}

/// A detached connection holding the leader lock, or None if another scheduler holds it.
async fn try_lead(pool: &PgPool) -> Result<Option<PgConnection>, sqlx::Error> {
    let mut conn = pool.acquire().await?.detach();
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(LEADER_LOCK)
        .fetch_one(&mut conn)
        .await?;
    Ok(locked.then_some(conn))
}
