//! Running PostgreSQL's programs, as the `postgres` user when we are root (PostgreSQL refuses
//! to run as root).

use super::SUPERUSER;
use super::binaries::{Binaries, is_executable, which};
use super::error::{LocalPgError, io_error};
use std::borrow::Cow;
use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

#[derive(Debug, Clone, Copy)]
struct PgUser {
    uid: u32,
    gid: u32,
}

/// Runs PostgreSQL's programs, as the `postgres` user when we are root.
pub(super) struct Runner {
    as_postgres: Option<PgUser>,
    runuser: Option<PathBuf>,
}

impl Runner {
    pub(super) fn new() -> Result<Runner, LocalPgError> {
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

    /// Whether the programs run as the `postgres` user (because we are root).
    pub(super) fn as_postgres(&self) -> bool {
        self.as_postgres.is_some()
    }

    /// The uid the server's files must belong to: the `postgres` user's, else ours.
    pub(super) fn server_uid(&self) -> u32 {
        self.as_postgres
            .as_ref()
            .map(|u| u.uid)
            .unwrap_or_else(|| current_euid().unwrap_or(0))
    }

    /// Restrict `dir` to mode 0700 and, when we are root, give it to the `postgres` user.
    pub(super) fn make_private(&self, dir: &Path) -> Result<(), LocalPgError> {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(io_error("set the permissions of", dir))?;
        if let Some(user) = &self.as_postgres {
            std::os::unix::fs::chown(dir, Some(user.uid), Some(user.gid))
                .map_err(io_error("give the postgres user", dir))?;
        }
        Ok(())
    }

    /// Whether the user running the programs may write to `dir` (`test -w`).
    pub(super) fn can_write(&self, dir: &Path) -> bool {
        self.command(Path::new("test"), ["-w".into(), dir.as_os_str().into()])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    }

    pub(super) fn command(
        &self,
        program: &Path,
        args: impl IntoIterator<Item = OsString>,
    ) -> Command {
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
                let line = words(program, &args)
                    .map(|w| shell_quote(&w))
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
    pub(super) fn run(
        &self,
        program: &Path,
        args: impl IntoIterator<Item = OsString>,
    ) -> Result<Output, LocalPgError> {
        let args: Vec<OsString> = args.into_iter().collect();
        let command_line = words(program, &args).collect::<Vec<_>>().join(" ");
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

    /// `pg_ctl <action> -D <data_dir> <extra…>`, run to completion.
    pub(super) fn pg_ctl(
        &self,
        bins: &Binaries,
        action: &str,
        data_dir: &Path,
        extra: impl IntoIterator<Item = OsString>,
    ) -> Result<Output, LocalPgError> {
        self.run(&bins.pg_ctl, pg_ctl_args(action, data_dir, extra))
    }

    /// `pg_ctl status`: exit 0 when a server runs on `data_dir`.
    pub(super) fn is_running(
        &self,
        bins: &Binaries,
        data_dir: &Path,
    ) -> Result<bool, LocalPgError> {
        let output = self
            .command(&bins.pg_ctl, pg_ctl_args("status", data_dir, []))
            .output()
            .map_err(io_error("run", &bins.pg_ctl))?;
        Ok(output.status.success())
    }
}

fn pg_ctl_args(
    action: &str,
    data_dir: &Path,
    extra: impl IntoIterator<Item = OsString>,
) -> Vec<OsString> {
    [action.into(), "-D".into(), data_dir.as_os_str().into()]
        .into_iter()
        .chain(extra)
        .collect()
}

/// The program and its arguments, as text.
fn words<'a>(program: &'a Path, args: &'a [OsString]) -> impl Iterator<Item = Cow<'a, str>> {
    std::iter::once(program.as_os_str())
        .chain(args.iter().map(|a| a.as_os_str()))
        .map(|a| a.to_string_lossy())
}

pub(super) fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
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
