//! What can be wrong with the configuration.

use std::path::{Path, PathBuf};

/// A setting that cannot be used, or a config file that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// e.g. "WEDSYNC_LISTEN=`abc` is not a socket address (expected e.g. 127.0.0.1:8080)".
    #[error("{setting} {problem} (expected {expected})")]
    Invalid {
        /// The variable or file key with its value (`(value hidden)` for secrets).
        setting: String,
        problem: String,
        expected: String,
    },
    #[error("cannot read the config file {}: {source} (check the --config path)", path.display())]
    ReadFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the config file {} is not valid: {message}", path.display())]
    File { path: PathBuf, message: String },
}

impl SettingsError {
    /// [`SettingsError::Invalid`]: `setting` (already named for a message) `problem`.
    pub(super) fn invalid(
        setting: String,
        problem: impl Into<String>,
        expected: impl Into<String>,
    ) -> SettingsError {
        SettingsError::Invalid {
            setting,
            problem: problem.into(),
            expected: expected.into(),
        }
    }

    /// [`SettingsError::File`]: the config file at `path` is not valid.
    pub(super) fn file(path: &Path, message: String) -> SettingsError {
        SettingsError::File {
            path: path.to_owned(),
            message,
        }
    }
}
