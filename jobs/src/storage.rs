//! Object storage for photos: a thin wrapper over the `object_store` crate so the rest of the
//! code names keys, not backends.
//!
//! `file:///dir` is a local folder (the embedded default), `s3://bucket/prefix` is S3 or any
//! S3-compatible store configured through the usual `AWS_*` variables (endpoint, region,
//! credentials), and tests may use the in-memory store. Keys are `/`-separated relative paths.

use bytes::Bytes;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path as ObjectPath;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use std::fmt;
use std::sync::Arc;
use url::Url;

/// Bytes buffered per part of a streamed upload (S3's minimum part size is 5 MiB).
const UPLOAD_CHUNK: usize = 5 * 1024 * 1024;
/// Parts of one streamed upload in flight at once; bounds its memory to about 2 chunks.
const UPLOAD_PARTS_IN_FLIGHT: usize = 2;

/// Failure of a storage operation, naming the operation and the key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    #[error("object `{key}` does not exist in {store}")]
    NotFound { store: String, key: String },
    #[error("storage {op} of `{key}` in {store} failed")]
    Backend {
        op: &'static str,
        store: String,
        key: String,
        #[source]
        source: Box<object_store::Error>,
    },
    #[error("storage URL `{url}` is not usable: {reason}")]
    Config { url: String, reason: String },
}

/// A handle to the configured object store; cheap to clone.
#[derive(Clone)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    /// Where it points, for messages (never carries credentials).
    describe: String,
}

impl fmt::Debug for Storage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Storage").field(&self.describe).finish()
    }
}

impl Storage {
    /// The store `url` names: `file:///absolute/dir` (created if missing) or
    /// `s3://bucket[/prefix]` (credentials, region and endpoint from `AWS_*` variables).
    pub fn from_url(url: &Url) -> Result<Storage, StorageError> {
        let config = |reason: String| StorageError::Config {
            url: url.to_string(),
            reason,
        };
        match url.scheme() {
            "file" => {
                let dir = url
                    .to_file_path()
                    .map_err(|()| config("not an absolute local path".into()))?;
                Storage::local(&dir)
            }
            "s3" => {
                let bucket = url.host_str().unwrap_or_default();
                let s3 = AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .build()
                    .map_err(|e| config(e.to_string()))?;
                let prefix = url.path().trim_matches('/');
                let store: Arc<dyn ObjectStore> = if prefix.is_empty() {
                    Arc::new(s3)
                } else {
                    Arc::new(PrefixStore::new(s3, prefix))
                };
                Ok(Storage {
                    store,
                    describe: format!("s3://{bucket}/{prefix}"),
                })
            }
            other => Err(config(format!("unsupported scheme `{other}`"))),
        }
    }

    /// A folder on the local disk, created if missing.
    pub fn local(dir: &std::path::Path) -> Result<Storage, StorageError> {
        let config = |reason: String| StorageError::Config {
            url: dir.display().to_string(),
            reason,
        };
        std::fs::create_dir_all(dir).map_err(|e| config(format!("cannot create it: {e}")))?;
        let store = LocalFileSystem::new_with_prefix(dir).map_err(|e| config(e.to_string()))?;
        Ok(Storage {
            store: Arc::new(store),
            describe: format!("file://{}", dir.display()),
        })
    }

    /// A store that lives in this process only (tests of code that never touches photos).
    pub fn in_memory() -> Storage {
        Storage {
            store: Arc::new(InMemory::new()),
            describe: "memory://".to_owned(),
        }
    }

    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<(), StorageError> {
        self.store
            .put(&ObjectPath::from(key), PutPayload::from(bytes))
            .await
            .map(drop)
            .map_err(|e| self.error("put", key, e))
    }

    pub async fn get(&self, key: &str) -> Result<Bytes, StorageError> {
        let path = ObjectPath::from(key);
        let result = self
            .store
            .get(&path)
            .await
            .map_err(|e| self.error("get", key, e))?;
        result.bytes().await.map_err(|e| self.error("get", key, e))
    }

    pub async fn exists(&self, key: &str) -> Result<bool, StorageError> {
        match self.store.head(&ObjectPath::from(key)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.error("head", key, e)),
        }
    }

    /// Remove `key`; a key that is already gone is not an error.
    pub async fn delete(&self, key: &str) -> Result<(), StorageError> {
        match self.store.delete(&ObjectPath::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error("delete", key, e)),
        }
    }

    /// Move `from` to `to`, replacing `to` if it exists.
    pub async fn rename(&self, from: &str, to: &str) -> Result<(), StorageError> {
        self.store
            .rename(&ObjectPath::from(from), &ObjectPath::from(to))
            .await
            .map_err(|e| self.error("rename", from, e))
    }

    /// Start a streamed upload to `key`: parts are sent as they fill, so an upload never needs
    /// to be held in memory whole.
    pub async fn upload(&self, key: &str) -> Result<Upload, StorageError> {
        let upload = self
            .store
            .put_multipart(&ObjectPath::from(key))
            .await
            .map_err(|e| self.error("upload", key, e))?;
        Ok(Upload {
            writer: WriteMultipart::new_with_chunk_size(upload, UPLOAD_CHUNK),
            storage: self.clone(),
            key: key.to_owned(),
        })
    }

    fn error(&self, op: &'static str, key: &str, source: object_store::Error) -> StorageError {
        match source {
            object_store::Error::NotFound { .. } => StorageError::NotFound {
                store: self.describe.clone(),
                key: key.to_owned(),
            },
            source => StorageError::Backend {
                op,
                store: self.describe.clone(),
                key: key.to_owned(),
                source: Box::new(source),
            },
        }
    }
}

impl fmt::Display for Storage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe)
    }
}

/// A streamed upload in progress; [`Upload::finish`] commits it, [`Upload::abort`] drops it.
pub struct Upload {
    writer: WriteMultipart,
    storage: Storage,
    key: String,
}

impl Upload {
    /// Append `bytes`, waiting first while too many parts are in flight.
    pub async fn write(&mut self, bytes: Bytes) -> Result<(), StorageError> {
        self.writer
            .wait_for_capacity(UPLOAD_PARTS_IN_FLIGHT)
            .await
            .map_err(|e| self.storage.error("upload", &self.key, e))?;
        self.writer.put(bytes);
        Ok(())
    }

    pub async fn finish(self) -> Result<(), StorageError> {
        let Upload {
            writer,
            storage,
            key,
        } = self;
        writer
            .finish()
            .await
            .map(drop)
            .map_err(|e| storage.error("upload", &key, e))
    }

    pub async fn abort(self) {
        if let Err(err) = self.writer.abort().await {
            tracing::warn!(key = %self.key, error = %err, "aborting an upload failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_store_round_trips_and_streams() {
        let dir = std::env::temp_dir().join(format!("wedsync-storage-{}", std::process::id()));
        let storage = Storage::local(&dir).unwrap();
        let mut upload = storage.upload("a/tmp").await.unwrap();
        upload.write(Bytes::from_static(b"hello ")).await.unwrap();
        upload.write(Bytes::from_static(b"world")).await.unwrap();
        upload.finish().await.unwrap();
        storage.rename("a/tmp", "a/final").await.unwrap();
        assert_eq!(storage.get("a/final").await.unwrap(), "hello world");
        assert!(!storage.exists("a/tmp").await.unwrap());
        storage.delete("a/final").await.unwrap();
        storage.delete("a/final").await.unwrap();
        assert!(matches!(
            storage.get("a/final").await,
            Err(StorageError::NotFound { .. })
        ));
        std::fs::remove_dir_all(dir).ok();
    }
}
