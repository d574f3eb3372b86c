//! The local PostgreSQL of the embedded default (`wedsync-jobs all` without `DATABASE_URL`) and of
//! the tests: a server already running on this machine (the default socket, then
//! 127.0.0.1:5432), or else a private cluster initialised and started from the PostgreSQL
//! binaries installed here.
//!
//! A private cluster listens on a unix socket only (inside its data directory, or under `/tmp`
//! when that path would be too long for a socket), so it never clashes with a system server.
//! Its URL has the form `postgres:///DB?host=/socket/dir&port=5432&user=postgres`.
//! When running as root, `initdb` and `pg_ctl` run as the `postgres` user (PostgreSQL refuses
//! to run as root) and the data directory belongs to that user.

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};
use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::str::FromStr;
use std::time::Duration;
use tokio::sync::OnceCell;

/// The superuser of every local server we use, and the name of the OS user that runs a private
/// cluster when we are root.
const SUPERUSER: &str = "postgres";
/// The port of a private cluster (on its own socket directory, so no clash with a system server).
pub const PRIVATE_PORT: u16 = 5432;
/// The default socket directory of Debian/Ubuntu's PostgreSQL.
const DEFAULT_SOCKET_DIR: &str = "/var/run/postgresql";
/// How long probing a local server may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// A unix socket path (`<dir>/.s.PGSQL.5432`) must fit in `sun_path` (108 bytes with the NUL).
const MAX_SOCKET_PATH: usize = 107;
/// Lines of `server.log` quoted when a cluster does not start.
const LOG_TAIL_LINES: usize = 20;

/// Why no local PostgreSQL could be found or started. Each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum LocalPgError {
    #[error(
        "no local PostgreSQL server is reachable and no PostgreSQL server binaries (initdb, pg_ctl) \
         were found to start a private one: install PostgreSQL server binaries, e.g. \
         `apt-get install postgresql` on Debian/Ubuntu, or set DATABASE_URL"
    )]
    NoBinaries,
    #[error(
        "running as root, so PostgreSQL must run as the `postgres` user, but there is no such \
         user: create it (e.g. `useradd --system --home /var/lib/postgresql postgres`), run as an \
         ordinary user, or set DATABASE_URL"
    )]
    NoPostgresUser,
    #[error(
        "the `postgres` user cannot write to {data_dir}: a parent directory is probably not \
         accessible to it (e.g. one under /root); run from a directory it can reach, or set \
         DATABASE_URL"
    )]
    NotAccessible { data_dir: PathBuf },
    #[error(
        "{data_dir} is not empty but is not a PostgreSQL data directory (it has no PG_VERSION): \
         remove it, or set DATABASE_URL"
    )]
    NotACluster { data_dir: PathBuf },
    #[error("{path} is not a directory owned by uid {uid}: remove it and try again")]
    UnsafeSocketDir { path: PathBuf, uid: u32 },
    #[error("could not {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("`{command}` failed ({status}): {output}")]
    Command {
        command: String,
        status: String,
        output: String,
    },
    #[error(
        "the private PostgreSQL in {} did not start; the end of {}:\n{log_tail}",
        data_dir.display(), log.display()
    )]
    StartFailed {
        data_dir: PathBuf,
        log: PathBuf,
        log_tail: String,
    },
    #[error("could not connect to the local PostgreSQL at {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("could not create database `{database}`: {source}")]
    CreateDatabase {
        database: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("invalid database name {0:?}: use 1 to 63 bytes, e.g. `wedsync`")]
    InvalidDatabaseName(String),
    #[error("invalid database URL: {0} (expected e.g. postgres://user:password@host:5432/db)")]
    InvalidUrl(String),
    #[error("the task starting PostgreSQL failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

// ---------------------------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------------------------

/// A URL of a database on a local server where `CREATE DATABASE` works (for tests and benchmarks).
///
/// `DATABASE_URL` set → the `postgres` database of that server; else a server on the default
/// socket or 127.0.0.1:5432 (user `postgres`); else a private throw-away cluster under
/// `$WEDSYNC_TEST_PG_DIR` (default `<tmp>/wedsync-test-pg`), started or reused. The answer is
/// computed once per process; later calls are cheap.
pub async fn admin_url() -> anyhow::Result<String> {
    static ADMIN_URL: OnceCell<String> = OnceCell::const_new();
    let url = ADMIN_URL
        .get_or_try_init(|| async {
            if let Some(url) = std::env::var("DATABASE_URL").ok().filter(|u| !u.is_empty()) {
                return with_database(&url, "postgres");
            }
            if let Some(server) = find_local_server().await {
                return Ok(server.url("postgres"));
            }
            let data_dir = std::env::var_os("WEDSYNC_TEST_PG_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| std::env::temp_dir().join("wedsync-test-pg"));
            let server = ensure_cluster(&data_dir, Durability::Throwaway).await?;
            Ok(server.url("postgres"))
        })
        .await?;
    Ok(url.clone())
}

/// The database URL of the embedded default when no `DATABASE_URL` is given: a server on the
/// default socket or 127.0.0.1:5432 (user `postgres`), else a private cluster under `data_dir`
/// (initialised on first use, started if stopped, reused if running). Database `database` is
/// created there if missing.
pub async fn resolve_database_url(database: &str, data_dir: &Path) -> Result<String, LocalPgError> {
    check_database_name(database)?;
    let server = match find_local_server().await {
        Some(server) => server,
        None => ensure_cluster(data_dir, Durability::Durable).await?,
    };
    create_database_if_missing(&server.options("postgres"), database).await?;
    Ok(server.url(database))
}

/// Initialise (if needed) and start (if stopped) the private cluster in `data_dir`, and return
/// the URL of its `postgres` database. Public for tests; [`resolve_database_url`] calls it when
/// no server is running.
pub async fn start_private_cluster(data_dir: &Path) -> Result<String, LocalPgError> {
    Ok(ensure_cluster(data_dir, Durability::Durable)
        .await?
        .url("postgres"))
}

/// Stop the private cluster in `data_dir` (`pg_ctl stop -m fast`) if it is running. Blocking.
pub fn stop_private_cluster(data_dir: &Path) -> Result<(), LocalPgError> {
    let data_dir = absolute(data_dir)?;
    if !data_dir.join("PG_VERSION").is_file() {
        return Ok(());
    }
    let runner = Runner::new()?;
    let bins = find_binaries(pg_version(&data_dir).as_deref())?;
    if runner.is_running(&bins, &data_dir)? {
        runner.run(
            &bins.pg_ctl,
            [
                "stop".into(),
                "-D".into(),
                data_dir.clone().into_os_string(),
                "-m".into(),
                "fast".into(),
                "-w".into(),
            ],
        )?;
    }
    let socket_dir = socket_dir_for(&data_dir.canonicalize().unwrap_or(data_dir.clone()));
    if socket_dir != data_dir {
        // Best effort: only succeeds once the server has removed its socket and lock files.
        let _ = fs::remove_dir(&socket_dir);
    }
    Ok(())
}

/// Create database `database` on the server of `server_url` (a URL of any database there) if it
/// does not exist, and return the URL of `database`.
pub async fn ensure_database(server_url: &str, database: &str) -> Result<String, LocalPgError> {
    check_database_name(database)?;
    let options = PgConnectOptions::from_str(server_url)
        .map_err(|e| LocalPgError::InvalidUrl(e.to_string()))?;
    create_database_if_missing(&options, database).await?;
    with_database(server_url, database)
}

/// `url` with its database replaced by `database` (any `dbname` query parameter removed).
pub fn with_database(url: &str, database: &str) -> Result<String, LocalPgError> {
    let mut parsed = url::Url::parse(url).map_err(|e| LocalPgError::InvalidUrl(e.to_string()))?;
    if !matches!(parsed.scheme(), "postgres" | "postgresql") {
        return Err(LocalPgError::InvalidUrl(format!(
            "scheme `{}` is not postgres://",
            parsed.scheme()
        )));
    }
    if parsed.query_pairs().any(|(k, _)| k == "dbname") {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .filter(|(k, _)| k != "dbname")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        if pairs.is_empty() {
            parsed.set_query(None);
        } else {
            parsed.query_pairs_mut().clear().extend_pairs(pairs);
        }
    }
    parsed.set_path(&format!("/{}", percent_encode(database)));
    Ok(parsed.to_string())
}

// ---------------------------------------------------------------------------------------------
// Servers and URLs
// ---------------------------------------------------------------------------------------------

/// Where a local server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Server {
    Socket { dir: PathBuf, port: u16 },
    Tcp { host: String, port: u16 },
}

impl Server {
    fn url(&self, database: &str) -> String {
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

    fn options(&self, database: &str) -> PgConnectOptions {
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
async fn find_local_server() -> Option<Server> {
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

async fn create_database_if_missing(
    admin: &PgConnectOptions,
    database: &str,
) -> Result<(), LocalPgError> {
    let connect_error = |source| LocalPgError::Connect {
        url: describe(admin),
        source,
    };
    let create_error = |source| LocalPgError::CreateDatabase {
        database: database.to_owned(),
        source,
    };
    let mut conn = PgConnection::connect_with(admin)
        .await
        .map_err(connect_error)?;
    let mut attempt = 0;
    let result = loop {
        attempt += 1;
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                .bind(database)
                .fetch_one(&mut conn)
                .await
                .map_err(create_error)?;
        if exists {
            break Ok(());
        }
        let sql = format!("CREATE DATABASE {}", quote_ident(database));
        match sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
        {
            Ok(_) => break Ok(()),
            Err(e) => {
                let code = e
                    .as_database_error()
                    .and_then(|d| d.code())
                    .map(|c| c.into_owned());
                match code.as_deref() {
                    // Created concurrently by someone else.
                    Some("42P04") | Some("23505") => break Ok(()),
                    // "source database "template1" is being accessed by other users".
                    Some("55006") if attempt < 10 => {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    _ => break Err(create_error(e)),
                }
            }
        }
    };
    conn.close().await.ok();
    result
}

/// A URL-like description of connect options, for messages (no password).
fn describe(options: &PgConnectOptions) -> String {
    match options.get_socket() {
        Some(dir) => format!(
            "postgres:///{}?host={}&port={}",
            options.get_database().unwrap_or(""),
            dir.display(),
            options.get_port()
        ),
        None => format!(
            "postgres://{}:{}/{}",
            options.get_host(),
            options.get_port(),
            options.get_database().unwrap_or("")
        ),
    }
}

fn check_database_name(database: &str) -> Result<(), LocalPgError> {
    if database.is_empty() || database.len() > 63 || database.contains('\0') {
        return Err(LocalPgError::InvalidDatabaseName(database.to_owned()));
    }
    Ok(())
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Percent-encode everything but unreserved characters and `/` (for paths and query values).
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Private clusters
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Durability {
    /// The embedded default's data: `fsync=on`.
    Durable,
    /// The tests' scratch cluster: no fsync, more connections.
    Throwaway,
}

/// Initialise/start/reuse the cluster in `data_dir` and wait until it accepts connections.
async fn ensure_cluster(data_dir: &Path, durability: Durability) -> Result<Server, LocalPgError> {
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

fn ensure_cluster_blocking(
    data_dir: &Path,
    durability: Durability,
) -> Result<Server, LocalPgError> {
    let data_dir = absolute(data_dir)?;
    let parent = data_dir.parent().unwrap_or(Path::new("/")).to_owned();
    fs::create_dir_all(&parent).map_err(io_error("create", &parent))?;

    // Serialise initdb/start across processes; the lock goes away with its holder.
    let lock_path = lock_path(&data_dir);
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io_error("open the lock file", &lock_path))?;
    lock.lock().map_err(io_error("lock", &lock_path))?;

    let runner = Runner::new()?;
    let bins = find_binaries(pg_version(&data_dir).as_deref())?;

    if !data_dir.join("PG_VERSION").is_file() {
        init_cluster(&runner, &bins, &data_dir, durability)?;
    }
    let data_dir = data_dir.canonicalize().unwrap_or(data_dir);

    if runner.is_running(&bins, &data_dir)?
        && let Some(server) = running_server(&data_dir)
    {
        tracing::debug!(data_dir = %data_dir.display(), "reusing the running private PostgreSQL");
        return Ok(server);
    }

    let socket_dir = socket_dir_for(&data_dir);
    if socket_dir != data_dir {
        prepare_socket_dir(&runner, &socket_dir)?;
    }
    let mut options = format!(
        "-c listen_addresses='' -k {} -p {PRIVATE_PORT}",
        shell_quote(&socket_dir.to_string_lossy())
    );
    match durability {
        Durability::Durable => options.push_str(" -c fsync=on"),
        Durability::Throwaway => options.push_str(
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
             -c max_connections=300",
        ),
    }
    let log = data_dir.join("server.log");
    tracing::info!(data_dir = %data_dir.display(), socket = %socket_dir.display(), "starting a private PostgreSQL");
    let started = runner.run(
        &bins.pg_ctl,
        [
            "start".into(),
            "-D".into(),
            data_dir.clone().into_os_string(),
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
            data_dir,
            log,
        });
    }
    drop(lock);
    Ok(running_server(&data_dir).unwrap_or(Server::Socket {
        dir: socket_dir,
        port: PRIVATE_PORT,
    }))
}

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
    fs::set_permissions(data_dir, fs::Permissions::from_mode(0o700))
        .map_err(io_error("set the permissions of", data_dir))?;
    if let Some(user) = &runner.as_postgres {
        std::os::unix::fs::chown(data_dir, Some(user.uid), Some(user.gid))
            .map_err(io_error("give the postgres user", data_dir))?;
        let writable = runner
            .command(
                Path::new("test"),
                ["-w".into(), data_dir.as_os_str().into()],
            )
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !writable {
            return Err(LocalPgError::NotAccessible {
                data_dir: data_dir.to_owned(),
            });
        }
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

/// The server of a running cluster, from its `postmaster.pid` (port and socket directory).
fn running_server(data_dir: &Path) -> Option<Server> {
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

/// The data directory itself when its socket path fits in `sun_path` and needs no quoting,
/// else `/tmp/wedsync-pg-<hash of the data directory>`.
fn socket_dir_for(data_dir: &Path) -> PathBuf {
    let text = data_dir.to_string_lossy();
    let socket_path_len = text.len() + format!("/.s.PGSQL.{PRIVATE_PORT}").len();
    let plain = text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'_' | b'-'));
    if socket_path_len <= MAX_SOCKET_PATH && plain {
        data_dir.to_owned()
    } else {
        PathBuf::from(format!("/tmp/wedsync-pg-{:016x}", fnv1a(text.as_bytes())))
    }
}

/// Create the socket directory (mode 0700, owned by whoever runs the server) and check that
/// nobody else prepared it for us.
fn prepare_socket_dir(runner: &Runner, dir: &Path) -> Result<(), LocalPgError> {
    match fs::create_dir(dir) {
        Ok(()) => {
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
                .map_err(io_error("set the permissions of", dir))?;
            if let Some(user) = &runner.as_postgres {
                std::os::unix::fs::chown(dir, Some(user.uid), Some(user.gid))
                    .map_err(io_error("give the postgres user", dir))?;
            }
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io_error("create", dir)(e)),
    }
    let expected_uid = runner
        .as_postgres
        .as_ref()
        .map(|u| u.uid)
        .unwrap_or_else(|| current_euid().unwrap_or(0));
    let meta = fs::symlink_metadata(dir).map_err(io_error("inspect", dir))?;
    if !meta.is_dir() || meta.uid() != expected_uid {
        return Err(LocalPgError::UnsafeSocketDir {
            path: dir.to_owned(),
            uid: expected_uid,
        });
    }
    Ok(())
}

fn lock_path(data_dir: &Path) -> PathBuf {
    let name = data_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "pg".into());
    data_dir.with_file_name(format!("{name}.lock"))
}

fn pg_version(data_dir: &Path) -> Option<String> {
    fs::read_to_string(data_dir.join("PG_VERSION"))
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

fn log_tail(log: &Path) -> Option<String> {
    let text = fs::read_to_string(log).ok()?;
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(LOG_TAIL_LINES);
    Some(lines[start..].join("\n")).filter(|t| !t.is_empty())
}

fn absolute(path: &Path) -> Result<PathBuf, LocalPgError> {
    std::path::absolute(path).map_err(io_error("resolve", path))
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> LocalPgError {
    let path = path.to_owned();
    move |source| LocalPgError::Io {
        action,
        path,
        source,
    }
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

// ---------------------------------------------------------------------------------------------
// Binaries and users
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Binaries {
    initdb: PathBuf,
    pg_ctl: PathBuf,
}

impl Binaries {
    fn in_dir(dir: &Path) -> Option<Binaries> {
        let (initdb, pg_ctl) = (dir.join("initdb"), dir.join("pg_ctl"));
        (is_executable(&initdb) && is_executable(&pg_ctl)).then_some(Binaries { initdb, pg_ctl })
    }
}

/// PostgreSQL's server binaries: those of `preferred_major` (an existing cluster's version) if
/// installed, else `pg_config --bindir`, else the newest `/usr/lib/postgresql/*/bin` (or
/// `/usr/pgsql-*/bin`), else `initdb` on `PATH`.
fn find_binaries(preferred_major: Option<&str>) -> Result<Binaries, LocalPgError> {
    if let Some(major) = preferred_major
        && let Some(bins) =
            Binaries::in_dir(&Path::new("/usr/lib/postgresql").join(major).join("bin"))
    {
        return Ok(bins);
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if let Some(bins) = Binaries::in_dir(Path::new(&dir)) {
            return Ok(bins);
        }
    }
    let mut versioned: Vec<(Vec<u32>, PathBuf)> = Vec::new();
    for (root, prefix) in [("/usr/lib/postgresql", ""), ("/usr", "pgsql-")] {
        let Ok(entries) = fs::read_dir(root) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(version) = name.strip_prefix(prefix) else {
                continue;
            };
            let Some(key) = version
                .split('.')
                .map(|p| p.parse::<u32>().ok())
                .collect::<Option<Vec<u32>>>()
            else {
                continue;
            };
            versioned.push((key, entry.path().join("bin")));
        }
    }
    versioned.sort();
    for (_, dir) in versioned.iter().rev() {
        if let Some(bins) = Binaries::in_dir(dir) {
            return Ok(bins);
        }
    }
    if let Some(initdb) = which("initdb") {
        let dir = initdb.parent().unwrap_or(Path::new("/"));
        if let Some(bins) = Binaries::in_dir(dir) {
            return Ok(bins);
        }
        if let Some(pg_ctl) = which("pg_ctl") {
            return Ok(Binaries { initdb, pg_ctl });
        }
    }
    Err(LocalPgError::NoBinaries)
}

fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[derive(Debug, Clone, Copy)]
struct PgUser {
    uid: u32,
    gid: u32,
}

/// Runs PostgreSQL's programs, as the `postgres` user when we are root.
struct Runner {
    as_postgres: Option<PgUser>,
    runuser: Option<PathBuf>,
}

impl Runner {
    fn new() -> Result<Runner, LocalPgError> {
        if current_euid() != Some(0) {
            return Ok(Runner {
                as_postgres: None,
                runuser: None,
            });
        }
        let user = postgres_user().ok_or(LocalPgError::NoPostgresUser)?;
        let runuser = ["/usr/sbin/runuser", "/sbin/runuser", "/usr/bin/runuser"]
            .iter()
            .map(PathBuf::from)
            .find(|p| is_executable(p))
            .or_else(|| which("runuser"));
        Ok(Runner {
            as_postgres: Some(user),
            runuser,
        })
    }

    fn command(&self, program: &Path, args: impl IntoIterator<Item = OsString>) -> Command {
        let args: Vec<OsString> = args.into_iter().collect();
        let mut cmd = match (&self.as_postgres, &self.runuser) {
            (None, _) => {
                let mut cmd = Command::new(program);
                cmd.args(&args);
                cmd
            }
            (Some(_), Some(runuser)) => {
                let mut cmd = Command::new(runuser);
                cmd.args(["-u", SUPERUSER, "--"]).arg(program).args(&args);
                cmd
            }
            (Some(_), None) => {
                let line = std::iter::once(program.as_os_str())
                    .chain(args.iter().map(|a| a.as_os_str()))
                    .map(|a| shell_quote(&a.to_string_lossy()))
                    .collect::<Vec<_>>()
                    .join(" ");
                let mut cmd = Command::new("su");
                cmd.args([SUPERUSER, "-s", "/bin/sh", "-c"]).arg(line);
                cmd
            }
        };
        // Our paths are absolute; the postgres user may not be able to enter our directory.
        cmd.current_dir("/");
        cmd.stdin(std::process::Stdio::null());
        cmd
    }

    /// Run to completion; a non-zero exit is an error quoting the program's output.
    fn run(
        &self,
        program: &Path,
        args: impl IntoIterator<Item = OsString>,
    ) -> Result<Output, LocalPgError> {
        let args: Vec<OsString> = args.into_iter().collect();
        let command_line = std::iter::once(program.as_os_str())
            .chain(args.iter().map(|a| a.as_os_str()))
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        let output = self
            .command(program, args)
            .output()
            .map_err(io_error("run", program))?;
        if output.status.success() {
            Ok(output)
        } else {
            let mut text = String::from_utf8_lossy(&output.stderr).trim().to_owned();
            let stdout = String::from_utf8_lossy(&output.stdout);
            if !stdout.trim().is_empty() {
                text = format!("{}\n{text}", stdout.trim());
            }
            Err(LocalPgError::Command {
                command: command_line,
                status: output.status.to_string(),
                output: text,
            })
        }
    }

    /// `pg_ctl status`: exit 0 when a server runs on `data_dir`.
    fn is_running(&self, bins: &Binaries, data_dir: &Path) -> Result<bool, LocalPgError> {
        let output = self
            .command(
                &bins.pg_ctl,
                ["status".into(), "-D".into(), data_dir.as_os_str().into()],
            )
            .output()
            .map_err(io_error("run", &bins.pg_ctl))?;
        Ok(output.status.success())
    }
}

/// The effective uid of this process (from /proc, else `id -u`).
fn current_euid() -> Option<u32> {
    static EUID: std::sync::OnceLock<Option<u32>> = std::sync::OnceLock::new();
    *EUID.get_or_init(|| {
        if let Ok(status) = fs::read_to_string("/proc/self/status")
            && let Some(line) = status.lines().find(|l| l.starts_with("Uid:"))
            && let Some(euid) = line.split_whitespace().nth(2)
        {
            return euid.parse().ok();
        }
        id(&["-u"])
    })
}

/// The uid and gid of the `postgres` user, if it exists.
fn postgres_user() -> Option<PgUser> {
    Some(PgUser {
        uid: id(&["-u", SUPERUSER])?,
        gid: id(&["-g", SUPERUSER])?,
    })
}

fn id(args: &[&str]) -> Option<u32> {
    let out = Command::new("id").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn with_database_replaces_the_database_only() {
        assert_eq!(
            with_database(
                "postgres://u:p%40ss@db.example:6543/app?sslmode=require",
                "postgres"
            )
            .unwrap(),
            "postgres://u:p%40ss@db.example:6543/postgres?sslmode=require"
        );
        assert_eq!(
            with_database("postgresql://u@h/?dbname=app&sslmode=disable", "x").unwrap(),
            "postgresql://u@h/x?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres:///a?host=/run/pg&port=5432", "b").unwrap(),
            "postgres:///b?host=/run/pg&port=5432"
        );
        assert!(matches!(
            with_database("mysql://h/db", "x"),
            Err(LocalPgError::InvalidUrl(_))
        ));
    }

    #[test]
    fn long_data_dirs_get_a_short_socket_dir() {
        let short = Path::new("/work/app/.wedsync/pg");
        assert_eq!(socket_dir_for(short), short);
        let long = PathBuf::from(format!("/{}/pg", "x".repeat(100)));
        let socket = socket_dir_for(&long);
        assert!(socket.to_string_lossy().starts_with("/tmp/wedsync-pg-"));
        assert_eq!(socket, socket_dir_for(&long), "stable");
        assert_eq!(
            socket_dir_for(Path::new("/a b/pg")),
            Path::new(&format!("/tmp/wedsync-pg-{:016x}", fnv1a(b"/a b/pg")))
        );
    }

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
        stop_private_cluster(&data_dir).unwrap();
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!(result.unwrap(), ("off".to_owned(), "300".to_owned()));
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("wed\"sync"), "\"wed\"\"sync\"");
        assert!(check_database_name("").is_err());
        assert!(check_database_name(&"a".repeat(64)).is_err());
        assert!(check_database_name("wedsync").is_ok());
    }
}
