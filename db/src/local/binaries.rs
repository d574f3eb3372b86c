//! Finding PostgreSQL's server binaries (`initdb`, `pg_ctl`) on this machine.

use super::LocalPgError;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, Clone)]
pub(super) struct Binaries {
    pub(super) initdb: PathBuf,
    pub(super) pg_ctl: PathBuf,
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
pub(super) fn find_binaries(preferred_major: Option<&str>) -> Result<Binaries, LocalPgError> {
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
    for dir in versioned_bin_dirs().iter().rev() {
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

/// `/usr/lib/postgresql/<version>/bin` and `/usr/pgsql-<version>/bin`, oldest version first.
fn versioned_bin_dirs() -> Vec<PathBuf> {
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
    versioned.into_iter().map(|(_, dir)| dir).collect()
}

/// The first executable `program` on `PATH`.
pub(super) fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| is_executable(p))
}

pub(super) fn is_executable(path: &Path) -> bool {
    fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}
