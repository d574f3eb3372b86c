//! The lock file that serialises initialising and starting a cluster across processes.

use super::error::{LocalPgError, io_error};
use std::fs::{self, File};
use std::path::{Path, PathBuf};

/// Block until this process holds the lock of `data_dir`; it is released when the returned file
/// is dropped, or when its holder dies.
pub(super) fn lock_data_dir(data_dir: &Path) -> Result<File, LocalPgError> {
    let lock_path = lock_path(data_dir);
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io_error("open the lock file", &lock_path))?;
    lock.lock().map_err(io_error("lock", &lock_path))?;
    Ok(lock)
}

/// `<data_dir>.lock`, beside the data directory (which may not exist yet).
fn lock_path(data_dir: &Path) -> PathBuf {
    let name = data_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "pg".into());
    data_dir.with_file_name(format!("{name}.lock"))
}
