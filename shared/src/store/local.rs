//! The local filesystem store used by the local run. Writes go to a temporary file renamed into
//! place, so a reader never sees half an object.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use super::{ObjectKey, ObjectStore, StoreError};

#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    /// A store rooted at `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    fn path(&self, key: &ObjectKey) -> PathBuf {
        self.root.join(key.as_str())
    }

    fn io(key: &ObjectKey) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
        move |e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                StoreError::NotFound(key.to_string())
            } else {
                StoreError::Io {
                    key: key.to_string(),
                    detail: e.to_string(),
                }
            }
        }
    }
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            walk(root, &path, out)?;
        } else if let Ok(rel) = path.strip_prefix(root) {
            let rel = rel.to_string_lossy().into_owned();
            if !rel.contains(".tmp-") {
                out.push(rel);
            }
        }
    }
    Ok(())
}

#[async_trait]
impl ObjectStore for LocalStore {
    async fn put(
        &self,
        key: &ObjectKey,
        body: Bytes,
        _content_type: &str,
    ) -> Result<(), StoreError> {
        let path = self.path(key);
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(Self::io(key))?;
        }
        let tmp = path.with_file_name(format!(
            "{}.tmp-{}",
            path.file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default(),
            uuid::Uuid::new_v4()
        ));
        tokio::fs::write(&tmp, &body).await.map_err(Self::io(key))?;
        tokio::fs::rename(&tmp, &path).await.map_err(Self::io(key))
    }

    async fn get(&self, key: &ObjectKey) -> Result<Bytes, StoreError> {
        tokio::fs::read(self.path(key))
            .await
            .map(Bytes::from)
            .map_err(Self::io(key))
    }

    async fn delete(&self, key: &ObjectKey) -> Result<(), StoreError> {
        match tokio::fs::remove_file(self.path(key)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Self::io(key)(e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectKey>, StoreError> {
        let root = self.root.clone();
        // The directory to start from: the deepest complete segment of the prefix.
        let start = match prefix.rsplit_once('/') {
            Some((dir, _)) => root.join(dir),
            None => root.clone(),
        };
        let prefix = prefix.to_owned();
        let keys = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            walk(&root, &start, &mut out).map(|_| out)
        })
        .await
        .map_err(|e| StoreError::Io {
            key: prefix.clone(),
            detail: e.to_string(),
        })?
        .map_err(|e| StoreError::Io {
            key: prefix.clone(),
            detail: e.to_string(),
        })?;
        let mut keys: Vec<ObjectKey> = keys
            .into_iter()
            .filter(|k| k.starts_with(&prefix))
            .filter_map(|k| ObjectKey::parse(&k).ok())
            .collect();
        keys.sort();
        Ok(keys)
    }

    /// A `file://` URL: the local run has no signing service, and the file is only on this machine.
    async fn presign_get(&self, key: &ObjectKey, _ttl: Duration) -> Result<String, StoreError> {
        let path = self.path(key);
        if !tokio::fs::try_exists(&path).await.map_err(Self::io(key))? {
            return Err(StoreError::NotFound(key.to_string()));
        }
        let abs = std::path::absolute(&path).map_err(Self::io(key))?;
        url::Url::from_file_path(&abs)
            .map(String::from)
            .map_err(|()| StoreError::Io {
                key: key.to_string(),
                detail: "path cannot be a file URL".into(),
            })
    }
}
