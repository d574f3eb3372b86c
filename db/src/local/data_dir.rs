//! What a cluster's data directory tells us: whether it holds a cluster, of which version,
//! where its running server listens, and how its last start went.

use super::server::Server;
use std::fs;
use std::path::Path;

/// Lines of `server.log` quoted when a cluster does not start.
const LOG_TAIL_LINES: usize = 20;

/// Whether `data_dir` holds an initialised cluster (it has a `PG_VERSION`).
pub(super) fn is_cluster(data_dir: &Path) -> bool {
    data_dir.join("PG_VERSION").is_file()
}

/// The major version of the cluster in `data_dir`, from its `PG_VERSION`.
pub(super) fn pg_version(data_dir: &Path) -> Option<String> {
    fs::read_to_string(data_dir.join("PG_VERSION"))
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// The server of a running cluster, from its `postmaster.pid` (port and socket directory).
pub(super) fn running_server(data_dir: &Path) -> Option<Server> {
    let pid_file = fs::read_to_string(data_dir.join("postmaster.pid")).ok()?;
    let lines: Vec<&str> = pid_file.lines().collect();
    let port = lines.get(3)?.trim().parse().ok()?;
    let dir = lines.get(4).map(|l| l.trim()).filter(|l| !l.is_empty());
    match dir {
        Some(dir) => Some(Server::Socket {
            dir: dir.into(),
            port,
        }),
        None => {
            let host = lines.get(5).map(|l| l.trim()).filter(|l| !l.is_empty())?;
            let host = if host == "*" || host == "0.0.0.0" {
                "127.0.0.1"
            } else {
                host
            };
            Some(Server::Tcp {
                host: host.to_owned(),
                port,
            })
        }
    }
}

/// The last [`LOG_TAIL_LINES`] lines of the server log `log`, if it has any.
pub(super) fn log_tail(log: &Path) -> Option<String> {
    let text = fs::read_to_string(log).ok()?;
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(LOG_TAIL_LINES);
    Some(lines[start..].join("\n")).filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postmaster_pid_gives_the_socket() {
        let dir = std::env::temp_dir().join(format!("wedsync-pidfile-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(
            dir.join("postmaster.pid"),
            "123\n/x/pg\n1700000000\n5432\n/tmp/sock\n\n  1234  5678\nready   \n",
        )
        .unwrap();
        assert_eq!(
            running_server(&dir),
            Some(Server::Socket {
                dir: "/tmp/sock".into(),
                port: 5432
            })
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
