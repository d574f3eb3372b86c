//! Private clusters: initialise one on first use, start it if stopped, reuse it if running,
//! and stop it.

use super::binaries::{Binaries, find_binaries};
use super::data_dir::{is_cluster, log_tail, pg_version, running_server};
use super::error::{LocalPgError, io_error};
use super::lock::lock_data_dir;
use super::runner::{Runner, shell_quote};
use super::server::Server;
use super::socket_dir::{prepare_socket_dir, socket_dir_for};
use super::{PRIVATE_PORT, SUPERUSER};
use sqlx::{Connection, PgConnection};
use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Durability {
    /// The embedded default's data: `fsync=on`.
    Durable,
    /// The tests' scratch cluster: no fsync, more connections.
    Throwaway,
}

impl Durability {
    /// The server settings (`pg_ctl -o`) besides where it listens.
    fn server_options(self) -> &'static str {
        match self {
            Durability::Durable => " -c fsync=on",
            Durability::Throwaway => {
                " -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
                 -c max_connections=300"
            }
        }
    }
}

/// Initialise/start/reuse the cluster in `data_dir` and wait until it accepts connections.
pub(super) async fn ensure_cluster(
    data_dir: &Path,
    durability: Durability,
) -> Result<Server, LocalPgError> {
    let data_dir = data_dir.to_owned();
    let server =
        tokio::task::spawn_blocking(move || ensure_cluster_blocking(&data_dir, durability))
            .await??;
    // `pg_ctl -w` waited for "ready"; a cluster found running may still be starting up.
    let options = server.options("postgres");
    let mut last_error = None;
    for _ in 0..40 {
        match PgConnection::connect_with(&options).await {
            Ok(conn) => {
                conn.close().await.ok();
                return Ok(server);
            }
            Err(e) => last_error = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Err(LocalPgError::Connect {
        url: server.url("postgres"),
        source: last_error.expect("at least one attempt"),
    })
}

/// Stop the cluster in `data_dir` (`pg_ctl stop -m fast`) if it is running, and remove its
/// socket directory under `/tmp`, if any.
pub(super) fn stop_cluster(data_dir: &Path) -> Result<(), LocalPgError> {
    let data_dir = absolute(data_dir)?;
    if !is_cluster(&data_dir) {
        return Ok(());
    }
    let (runner, bins) = runner_and_binaries(&data_dir)?;
    if runner.is_running(&bins, &data_dir)? {
        runner.pg_ctl(
            &bins,
            "stop",
            &data_dir,
            ["-m".into(), "fast".into(), "-w".into()],
        )?;
    }
    let socket_dir = socket_dir_for(&data_dir.canonicalize().unwrap_or(data_dir.clone()));
    if socket_dir != data_dir {
        // Best effort: only succeeds once the server has removed its socket and lock files.
        let _ = fs::remove_dir(&socket_dir);
    }
    Ok(())
}

fn ensure_cluster_blocking(
    data_dir: &Path,
    durability: Durability,
) -> Result<Server, LocalPgError> {
    let data_dir = absolute(data_dir)?;
    let parent = data_dir.parent().unwrap_or(Path::new("/")).to_owned();
    fs::create_dir_all(&parent).map_err(io_error("create", &parent))?;

    // Serialise initdb/start across processes; the lock goes away with its holder.
    let lock = lock_data_dir(&data_dir)?;

    let (runner, bins) = runner_and_binaries(&data_dir)?;
    if !is_cluster(&data_dir) {
        init_cluster(&runner, &bins, &data_dir, durability)?;
    }
    let data_dir = data_dir.canonicalize().unwrap_or(data_dir);

    if runner.is_running(&bins, &data_dir)?
        && let Some(server) = running_server(&data_dir)
    {
        tracing::debug!(data_dir = %data_dir.display(), "reusing the running private PostgreSQL");
        return Ok(server);
    }

    let socket_dir = start_cluster(&runner, &bins, &data_dir, durability)?;
    drop(lock);
    Ok(running_server(&data_dir).unwrap_or(Server::Socket {
        dir: socket_dir,
        port: PRIVATE_PORT,
    }))
}

/// How to run PostgreSQL's programs, and which ones: those of the cluster's version if known.
fn runner_and_binaries(data_dir: &Path) -> Result<(Runner, Binaries), LocalPgError> {
    let runner = Runner::new()?;
    let bins = find_binaries(pg_version(data_dir).as_deref())?;
    Ok((runner, bins))
}

/// `initdb` an empty or missing `data_dir`, owned by whoever runs the server.
fn init_cluster(
    runner: &Runner,
    bins: &Binaries,
    data_dir: &Path,
    durability: Durability,
) -> Result<(), LocalPgError> {
    match fs::read_dir(data_dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(LocalPgError::NotACluster {
                    data_dir: data_dir.to_owned(),
                });
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(data_dir).map_err(io_error("create", data_dir))?;
        }
        Err(e) => return Err(io_error("read", data_dir)(e)),
    }
    runner.make_private(data_dir)?;
    if runner.as_postgres() && !runner.can_write(data_dir) {
        return Err(LocalPgError::NotAccessible {
            data_dir: data_dir.to_owned(),
        });
    }
    tracing::info!(data_dir = %data_dir.display(), "initialising a private PostgreSQL cluster");
    let mut args: Vec<OsString> = vec![
        "-D".into(),
        data_dir.as_os_str().into(),
        "--auth=trust".into(),
        "-U".into(),
        SUPERUSER.into(),
        "--encoding=UTF8".into(),
        "--locale=C".into(),
    ];
    if durability == Durability::Throwaway {
        args.push("--no-sync".into());
    }
    runner.run(&bins.initdb, args)?;
    Ok(())
}

/// `pg_ctl start` the stopped cluster in `data_dir`, listening on its private socket only;
/// returns the socket directory. A failed start quotes the end of the server log.
fn start_cluster(
    runner: &Runner,
    bins: &Binaries,
    data_dir: &Path,
    durability: Durability,
) -> Result<PathBuf, LocalPgError> {
    let socket_dir = socket_dir_for(data_dir);
    if socket_dir != data_dir {
        prepare_socket_dir(runner, &socket_dir)?;
    }
    let options = format!(
        "-c listen_addresses='' -k {} -p {PRIVATE_PORT}{}",
        shell_quote(&socket_dir.to_string_lossy()),
        durability.server_options()
    );
    let log = data_dir.join("server.log");
    tracing::info!(data_dir = %data_dir.display(), socket = %socket_dir.display(), "starting a private PostgreSQL");
    let started = runner.pg_ctl(
        bins,
        "start",
        data_dir,
        [
            "-l".into(),
            log.clone().into_os_string(),
            "-w".into(),
            "-t".into(),
            "60".into(),
            "-o".into(),
            options.into(),
        ],
    );
    if let Err(error) = started {
        return Err(LocalPgError::StartFailed {
            log_tail: log_tail(&log).unwrap_or_else(|| error.to_string()),
            data_dir: data_dir.to_owned(),
            log,
        });
    }
    Ok(socket_dir)
}

fn absolute(path: &Path) -> Result<PathBuf, LocalPgError> {
    std::path::absolute(path).map_err(io_error("resolve", path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn throwaway_cluster_starts_without_fsync() {
        let dir = std::env::temp_dir().join(format!("wsj-throwaway-{}", std::process::id()));
        let data_dir = dir.join("pg");
        let result = async {
            let server = ensure_cluster(&data_dir, Durability::Throwaway).await?;
            let mut conn = PgConnection::connect(&server.url("postgres"))
                .await
                .map_err(|source| LocalPgError::Connect {
                    url: server.url("postgres"),
                    source,
                })?;
            let settings: (String, String) = sqlx::query_as(
                "SELECT current_setting('fsync'), current_setting('max_connections')",
            )
            .fetch_one(&mut conn)
            .await
            .map_err(|source| LocalPgError::Connect {
                url: server.url("postgres"),
                source,
            })?;
            conn.close().await.ok();
            Ok::<_, LocalPgError>(settings)
        }
        .await;
        stop_cluster(&data_dir).unwrap();
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!(result.unwrap(), ("off".to_owned(), "300".to_owned()));
    }
}
