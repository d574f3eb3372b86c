//! The unix socket directory of a private cluster: its data directory when the socket path
//! fits, else a short directory under `/tmp` that we create and check.

use super::PRIVATE_PORT;
use super::error::{LocalPgError, io_error};
use super::runner::Runner;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// A unix socket path (`<dir>/.s.PGSQL.5432`) must fit in `sun_path` (108 bytes with the NUL).
const MAX_SOCKET_PATH: usize = 107;

/// The data directory itself when its socket path fits in `sun_path` and needs no quoting,
/// else `/tmp/wedsync-pg-<hash of the data directory>`.
pub(super) fn socket_dir_for(data_dir: &Path) -> PathBuf {
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
pub(super) fn prepare_socket_dir(runner: &Runner, dir: &Path) -> Result<(), LocalPgError> {
    match fs::create_dir(dir) {
        Ok(()) => runner.make_private(dir)?,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io_error("create", dir)(e)),
    }
    let expected_uid = runner.server_uid();
    let meta = fs::symlink_metadata(dir).map_err(io_error("inspect", dir))?;
    if !meta.is_dir() || meta.uid() != expected_uid {
        return Err(LocalPgError::UnsafeSocketDir {
            path: dir.to_owned(),
            uid: expected_uid,
        });
    }
    Ok(())
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
