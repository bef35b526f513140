//! Object storage behind one small trait: S3 in AWS (and against moto in tests), the local
//! filesystem for the local run. Raw homepage HTML, PDF reports and exports live here.

mod key;
mod local;
mod s3;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

pub use key::ObjectKey;
pub use local::LocalStore;
pub use s3::{PART_SIZE, S3Store};

/// The store a configuration names; an S3 client is built on first use.
pub fn from_config(
    config: &crate::config::StoreConfig,
    sdk: &Arc<crate::aws::LazySdk>,
) -> Arc<dyn ObjectStore> {
    match config {
        crate::config::StoreConfig::S3 { bucket } => Arc::new(S3Store::lazy(sdk, bucket)),
        crate::config::StoreConfig::Local { root } => Arc::new(LocalStore::new(root)),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("object {0} not found")]
    NotFound(String),
    #[error("invalid object key {key:?}: {reason}")]
    BadKey { key: String, reason: &'static str },
    #[error("object store I/O on {key}: {detail}")]
    Io { key: String, detail: String },
    #[error("object store service error on {key}: {detail}")]
    Service { key: String, detail: String },
}

/// The object store every function shares.
#[async_trait]
pub trait ObjectStore: Send + Sync {
    /// Writes (or overwrites) an object.
    async fn put(&self, key: &ObjectKey, body: Bytes, content_type: &str)
    -> Result<(), StoreError>;
    /// Reads an object; [`StoreError::NotFound`] when it does not exist.
    async fn get(&self, key: &ObjectKey) -> Result<Bytes, StoreError>;
    /// Deletes an object; deleting a missing object succeeds (retries are harmless).
    async fn delete(&self, key: &ObjectKey) -> Result<(), StoreError>;
    /// Every key under `prefix`, sorted.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectKey>, StoreError>;
    /// A URL that lets its holder GET the object until `ttl` passes.
    async fn presign_get(&self, key: &ObjectKey, ttl: Duration) -> Result<String, StoreError>;
    /// Reads an object as a stream of chunks, so a reader of any size holds one chunk at a time.
    async fn get_stream(&self, key: &ObjectKey) -> Result<Chunks, StoreError>;
    /// Writes an object from chunks handed over one by one (memory bounded by one upload part);
    /// the object appears only when the writer finishes, whole.
    async fn put_writer(
        &self,
        key: &ObjectKey,
        content_type: &str,
    ) -> Result<Box<dyn ObjectWriter>, StoreError>;
}

/// An object's bytes, chunk by chunk.
pub type Chunks = futures_util::stream::BoxStream<'static, Result<Bytes, StoreError>>;

/// An object being written: [`ObjectWriter::finish`] makes it appear; an abandoned or aborted
/// writer leaves nothing readable behind.
#[async_trait]
pub trait ObjectWriter: Send {
    async fn write(&mut self, chunk: Bytes) -> Result<(), StoreError>;
    async fn finish(self: Box<Self>) -> Result<(), StoreError>;
    /// Gives up the object and frees what its parts hold.
    async fn abort(self: Box<Self>);
}
