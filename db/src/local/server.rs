//! Local servers: where one listens, how to reach it, and finding one already running.

use super::SUPERUSER;
use super::url::percent_encode;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};
use std::path::PathBuf;
use std::time::Duration;

/// The default socket directory of Debian/Ubuntu's PostgreSQL.
const DEFAULT_SOCKET_DIR: &str = "/var/run/postgresql";
/// How long probing a local server may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Where a local server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Server {
    Socket { dir: PathBuf, port: u16 },
    Tcp { host: String, port: u16 },
}

impl Server {
    pub(super) fn url(&self, database: &str) -> String {
        let database = percent_encode(database);
        match self {
            Server::Socket { dir, port } => format!(
                "postgres:///{database}?host={}&port={port}&user={SUPERUSER}",
                percent_encode(&dir.to_string_lossy())
            ),
            Server::Tcp { host, port } => {
                format!("postgres://{SUPERUSER}@{host}:{port}/{database}")
            }
        }
    }

    pub(super) fn options(&self, database: &str) -> PgConnectOptions {
        let options = PgConnectOptions::new_without_pgpass()
            .username(SUPERUSER)
            .database(database);
        match self {
            Server::Socket { dir, port } => options.socket(dir).port(*port),
            Server::Tcp { host, port } => options.host(host).port(*port),
        }
    }
}

/// A running server on the default socket or 127.0.0.1:5432 where user `postgres` may create
/// databases, if any.
pub(super) async fn find_local_server() -> Option<Server> {
    let candidates = [
        Server::Socket {
            dir: DEFAULT_SOCKET_DIR.into(),
            port: 5432,
        },
        Server::Tcp {
            host: "127.0.0.1".into(),
            port: 5432,
        },
    ];
    for server in candidates {
        if let Server::Socket { dir, port } = &server
            && !dir.join(format!(".s.PGSQL.{port}")).exists()
        {
            continue;
        }
        match probe(&server).await {
            Ok(()) => {
                tracing::debug!(url = %server.url("postgres"), "using the local PostgreSQL");
                return Some(server);
            }
            Err(reason) => {
                tracing::debug!(url = %server.url("postgres"), %reason, "local PostgreSQL not usable")
            }
        }
    }
    None
}

/// Connect (within [`PROBE_TIMEOUT`]) and check that we may create databases.
async fn probe(server: &Server) -> Result<(), String> {
    let options = server.options("postgres");
    let attempt = async {
        let mut conn = PgConnection::connect_with(&options).await?;
        let allowed: bool = sqlx::query_scalar(
            "SELECT rolsuper OR rolcreatedb FROM pg_roles WHERE rolname = current_user",
        )
        .fetch_one(&mut conn)
        .await?;
        conn.close().await.ok();
        Ok::<_, sqlx::Error>(allowed)
    };
    match tokio::time::timeout(PROBE_TIMEOUT, attempt).await {
        Ok(Ok(true)) => Ok(()),
        Ok(Ok(false)) => Err("user postgres may not create databases".into()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn socket_url_parses_back_to_the_socket() {
        let server = Server::Socket {
            dir: "/tmp/some dir+x/pg".into(),
            port: 5432,
        };
        let url = server.url("wedsync");
        assert_eq!(
            url,
            "postgres:///wedsync?host=/tmp/some%20dir%2Bx/pg&port=5432&user=postgres"
        );
        let options = PgConnectOptions::from_str(&url).unwrap();
        assert_eq!(
            options.get_socket(),
            Some(&PathBuf::from("/tmp/some dir+x/pg"))
        );
        assert_eq!(options.get_port(), 5432);
        assert_eq!(options.get_username(), "postgres");
        assert_eq!(options.get_database(), Some("wedsync"));
    }

    #[test]
    fn tcp_url() {
        let server = Server::Tcp {
            host: "127.0.0.1".into(),
            port: 5432,
        };
        assert_eq!(
            server.url("postgres"),
            "postgres://postgres@127.0.0.1:5432/postgres"
        );
    }
}
