//! The local PostgreSQL of the embedded default: the machine's server, and a private cluster
//! initialised and started from the installed binaries.

use sqlx::{Connection, PgConnection};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};
use wedsync_db::local;

/// A fresh directory, removed (after stopping any cluster in `pg/`) when dropped.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new(parent: &Path, tag: &str) -> ScratchDir {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let dir = parent.join(format!("wsj-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        ScratchDir(dir)
    }

    fn data_dir(&self) -> PathBuf {
        self.0.join("pg")
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if let Err(e) = local::stop_private_cluster(&self.data_dir()) {
            eprintln!("stopping the scratch cluster: {e}");
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn select_one(url: &str) -> i32 {
    let mut conn = PgConnection::connect(url)
        .await
        .unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
    let one: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    one
}

#[tokio::test]
async fn admin_url_connects_and_is_cached() {
    let url = local::admin_url().await.expect("a local PostgreSQL");
    assert_eq!(select_one(&url).await, 1);
    let again = tokio::join!(local::admin_url(), local::admin_url(), local::admin_url());
    assert_eq!(again.0.unwrap(), url);
    assert_eq!(again.1.unwrap(), url);
    assert_eq!(again.2.unwrap(), url);
}

#[tokio::test]
async fn private_cluster_initialises_starts_restarts_and_creates_a_database() {
    let scratch = ScratchDir::new(&std::env::temp_dir(), "pg");
    let data_dir = scratch.data_dir();

    let url = local::start_private_cluster(&data_dir)
        .await
        .expect("initdb + start");
    assert!(data_dir.join("PG_VERSION").is_file());
    assert!(
        url.starts_with("postgres:///postgres?host=/"),
        "socket URL: {url}"
    );
    assert!(
        url.contains(&*data_dir.to_string_lossy()),
        "socket inside the data dir: {url}"
    );
    assert_eq!(select_one(&url).await, 1);

    // Running: reused as it is.
    assert_eq!(local::start_private_cluster(&data_dir).await.unwrap(), url);

    // A database is created once; asking again is fine.
    let db_url = local::ensure_database(&url, "wedsync").await.unwrap();
    assert_eq!(
        local::ensure_database(&url, "wedsync").await.unwrap(),
        db_url
    );
    let mut conn = PgConnection::connect(&db_url).await.unwrap();
    let name: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(name, "wedsync");
    let fsync: String = sqlx::query_scalar("SHOW fsync")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(fsync, "on");
    conn.close().await.unwrap();

    // Stopped: started again, data kept.
    local::stop_private_cluster(&data_dir).unwrap();
    assert!(PgConnection::connect(&db_url).await.is_err());
    assert_eq!(local::start_private_cluster(&data_dir).await.unwrap(), url);
    assert_eq!(select_one(&db_url).await, 1);
}

#[tokio::test]
async fn private_cluster_with_a_long_path_uses_a_short_socket_dir() {
    let long_parent = std::env::temp_dir().join("wsj-long-".to_owned() + &"x".repeat(90));
    let scratch = ScratchDir::new(&long_parent, "long");
    let url = local::start_private_cluster(&scratch.data_dir())
        .await
        .expect("initdb + start under a long path");
    assert!(
        url.contains("host=/tmp/wedsync-pg-"),
        "socket under /tmp: {url}"
    );
    assert_eq!(select_one(&url).await, 1);
    drop(scratch);
    let _ = std::fs::remove_dir_all(&long_parent);
}

#[tokio::test]
async fn a_non_empty_directory_that_is_not_a_cluster_is_refused() {
    let scratch = ScratchDir::new(&std::env::temp_dir(), "notpg");
    std::fs::create_dir_all(scratch.data_dir()).unwrap();
    std::fs::write(scratch.data_dir().join("something"), "else").unwrap();
    let err = local::start_private_cluster(&scratch.data_dir())
        .await
        .unwrap_err();
    assert!(
        matches!(err, local::LocalPgError::NotACluster { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("PG_VERSION"), "{err}");
}

#[tokio::test]
async fn resolve_database_url_creates_the_database() {
    let scratch = ScratchDir::new(&std::env::temp_dir(), "resolve");
    let name = format!("wedsync_test_resolve_{}", std::process::id());
    let url = local::resolve_database_url(&name, &scratch.data_dir())
        .await
        .expect("a local server or a private cluster");
    // Idempotent.
    assert_eq!(
        local::resolve_database_url(&name, &scratch.data_dir())
            .await
            .unwrap(),
        url
    );
    let mut conn = PgConnection::connect(&url).await.unwrap();
    let current: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(current, name);
    conn.close().await.unwrap();

    let admin = local::with_database(&url, "postgres").unwrap();
    let mut admin = PgConnection::connect(&admin).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    admin.close().await.unwrap();
}
