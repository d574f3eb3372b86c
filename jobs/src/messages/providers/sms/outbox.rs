//! The SMS "provider" of the embedded default: a folder of JSON files, one per message, like the
//! `.eml` outbox of email.

use super::super::{SendError, SmsMessage};
use std::path::PathBuf;

/// No provider configured (the embedded default): each message becomes `<uuid>.json` in `dir`.
#[derive(Clone, Debug)]
pub struct SmsOutbox {
    dir: PathBuf,
}

impl SmsOutbox {
    pub fn new(dir: impl Into<PathBuf>) -> SmsOutbox {
        SmsOutbox { dir: dir.into() }
    }

    /// Write `message` as `<uuid>.json` (the folder is created on first use) and return the
    /// uuid as its message id. The file appears whole: it is written aside, then renamed.
    /// A folder that cannot be written is [`SendError::Unavailable`], as a provider down is.
    pub async fn send(&self, message: &SmsMessage) -> Result<Option<String>, SendError> {
        let failed = |what: &str, e: std::io::Error| {
            SendError::Unavailable(format!("SMS outbox {}: {what}: {e}", self.dir.display()))
        };
        tokio::fs::create_dir_all(&self.dir)
            .await
            .map_err(|e| failed("create the folder", e))?;
        let id = uuid::Uuid::new_v4().to_string();
        let json = serde_json::to_vec_pretty(message).expect("an SMS message serialises");
        let partial = self.dir.join(format!(".{id}.json.partial"));
        tokio::fs::write(&partial, json)
            .await
            .map_err(|e| failed("write", e))?;
        tokio::fs::rename(&partial, self.dir.join(format!("{id}.json")))
            .await
            .map_err(|e| failed("rename", e))?;
        Ok(Some(id))
    }
}
