//! The local filesystem store used by the local run. Writes go to a temporary file renamed into
//! place, so a reader never sees half an object.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use super::{Chunks, ObjectKey, ObjectStore, ObjectWriter, StoreError};

/// How much a streamed read takes from the file at a time.
const READ_CHUNK: usize = 256 * 1024;

/// An object being written to a temporary file, renamed into place when finished.
struct LocalWriter {
    key: ObjectKey,
    file: tokio::fs::File,
    tmp: PathBuf,
    path: PathBuf,
}

#[async_trait]
impl ObjectWriter for LocalWriter {
    async fn write(&mut self, chunk: Bytes) -> Result<(), StoreError> {
        self.file
            .write_all(&chunk)
            .await
            .map_err(LocalStore::io(&self.key))
    }

    async fn finish(mut self: Box<Self>) -> Result<(), StoreError> {
        // Priced as S3 would bill it.
        crate::compute::count(crate::compute::Service::S3, 1);
        self.file.flush().await.map_err(LocalStore::io(&self.key))?;
        tokio::fs::rename(&self.tmp, &self.path)
            .await
            .map_err(LocalStore::io(&self.key))
    }

    async fn abort(self: Box<Self>) {
        let _ = tokio::fs::remove_file(&self.tmp).await;
    }
}

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

    /// The object's path, and a temporary one beside it to write to and rename into place
    /// (its directory created).
    async fn paths_for_write(&self, key: &ObjectKey) -> Result<(PathBuf, PathBuf), StoreError> {
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
        Ok((path, tmp))
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
        // Priced as S3 would bill it.
        crate::compute::count(crate::compute::Service::S3, 1);
        let (path, tmp) = self.paths_for_write(key).await?;
        tokio::fs::write(&tmp, &body).await.map_err(Self::io(key))?;
        tokio::fs::rename(&tmp, &path).await.map_err(Self::io(key))
    }

    async fn get_stream(&self, key: &ObjectKey) -> Result<Chunks, StoreError> {
        // Priced as S3 would bill it.
        crate::compute::count(crate::compute::Service::S3, 1);
        use tokio::io::AsyncReadExt;
        let file = tokio::fs::File::open(self.path(key))
            .await
            .map_err(Self::io(key))?;
        let key = key.clone();
        Ok(futures_util::stream::try_unfold(file, move |mut file| {
            let key = key.clone();
            async move {
                let mut buf = bytes::BytesMut::with_capacity(READ_CHUNK);
                let n = file.read_buf(&mut buf).await.map_err(Self::io(&key))?;
                Ok((n > 0).then(|| (buf.freeze(), file)))
            }
        })
        .boxed())
    }

    async fn put_writer(
        &self,
        key: &ObjectKey,
        _content_type: &str,
    ) -> Result<Box<dyn ObjectWriter>, StoreError> {
        let (path, tmp) = self.paths_for_write(key).await?;
        let file = tokio::fs::File::create(&tmp).await.map_err(Self::io(key))?;
        Ok(Box::new(LocalWriter {
            key: key.clone(),
            file,
            tmp,
            path,
        }))
    }

    async fn get(&self, key: &ObjectKey) -> Result<Bytes, StoreError> {
        // Priced as S3 would bill it.
        crate::compute::count(crate::compute::Service::S3, 1);
        tokio::fs::read(self.path(key))
            .await
            .map(Bytes::from)
            .map_err(Self::io(key))
    }

    async fn delete(&self, key: &ObjectKey) -> Result<(), StoreError> {
        // Priced as S3 would bill it.
        crate::compute::count(crate::compute::Service::S3, 1);
        match tokio::fs::remove_file(self.path(key)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Self::io(key)(e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectKey>, StoreError> {
        // Priced as S3 would bill it.
        crate::compute::count(crate::compute::Service::S3, 1);
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
