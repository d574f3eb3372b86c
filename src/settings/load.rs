//! Building [`Settings`] from the environment and the parsed config file.

use super::file::ConfigFile;
use super::queues::parse_queues;
use super::schedule::parse_schedule;
use super::source::Source;
use super::values::{
    parse_database_url, parse_listen, parse_log_format, parse_pool_size, parse_signing_key,
    parse_storage_url, parse_timezone, parse_url,
};
use super::{
    DEFAULT_DATA_DIR, DEFAULT_LISTEN, PhotoSettings, Settings, SettingsError, WorkerTuning,
};
use std::path::{Path, PathBuf};

impl Settings {
    /// The work of [`Settings::from_env_and_file`], with the file's path and text.
    pub(super) fn from_env_and_toml(
        env: impl Fn(&str) -> Option<String>,
        file: Option<(&Path, &str)>,
    ) -> Result<Settings, SettingsError> {
        let file = ConfigFile::parse(file)?;
        let path = file.path;
        let source = Source {
            env: &env,
            file: &file.scalars,
            path,
        };
        // Read in this order, so that the first bad setting is the one reported.
        Ok(Settings {
            database_url: source
                .get("DATABASE_URL", true)?
                .map(parse_database_url)
                .transpose()?,
            db_pool_size: source
                .get("WEDSYNC_DB_POOL_SIZE", false)?
                .map(|v| parse_pool_size(&v.raw).map_err(|(p, e)| v.invalid(&p, &e)))
                .transpose()?,
            listen: source
                .get("WEDSYNC_LISTEN", false)?
                .map(|v| parse_listen(&v))
                .transpose()?
                .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("valid default")),
            smtp_url: super::messages::smtp_url(&source, "WEDSYNC_SMTP_URL")?,
            sms_url: super::messages::sms_url(&source, "WEDSYNC_SMS_URL")?,
            storage_url: source
                .get("WEDSYNC_STORAGE_URL", false)?
                .map(parse_storage_url)
                .transpose()?,
            public_url: source
                .get("WEDSYNC_PUBLIC_URL", false)?
                .map(|v| parse_url(&v, &["http", "https"], "e.g. https://jobs.wedsync.example"))
                .transpose()?,
            signing_key: source
                .get("WEDSYNC_SIGNING_KEY", true)?
                .map(parse_signing_key)
                .transpose()?,
            timezone: source
                .get("WEDSYNC_TIMEZONE", false)?
                .map(|v| parse_timezone(&v.raw).map_err(|(p, e)| v.invalid(&p, &e)))
                .transpose()?
                .unwrap_or(chrono_tz::Europe::London),
            log_format: source
                .get("WEDSYNC_LOG_FORMAT", false)?
                .map(|v| parse_log_format(&v))
                .transpose()?
                .unwrap_or_default(),
            log_filter: source.get("RUST_LOG", false)?.map(|v| v.raw),
            data_dir: source
                .get("WEDSYNC_DATA_DIR", false)?
                .map(|v| PathBuf::from(v.raw))
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            worker: WorkerTuning::read(&source)?,
            metric_events: super::metrics::read_metric_events(&source)?,
            photos: PhotoSettings::read(&source)?,
            messages: super::MessageSettings::read(&source)?,
            queues: parse_queues(file.queues, path)?,
            schedule: parse_schedule(file.schedule, path)?,
        })
    }
}
