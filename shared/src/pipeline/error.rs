//! What can stop a stage's batch from being stored or handed on, by the part that failed.

use crate::bus::BusError;
use crate::db::DbError;
use crate::store::StoreError;
use crate::vendors::VendorError;

/// A batch-level failure: every message of the tenant's batch is redelivered. (A single
/// message's failed work is a [`super::WorkError`], which fails that message only.)
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("queue: {0}")]
    Bus(#[from] BusError),
    #[error("object store: {0}")]
    Store(#[from] StoreError),
    #[error("could not encode {what}: {source}")]
    Encode {
        what: &'static str,
        source: serde_json::Error,
    },
    #[error(transparent)]
    Vendor(#[from] VendorError),
    #[error("domain events: {0}")]
    Events(#[from] crate::events::EventError),
}

impl From<deadpool_postgres::PoolError> for StageError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        StageError::Db(e.into())
    }
}

impl From<tokio_postgres::Error> for StageError {
    fn from(e: tokio_postgres::Error) -> Self {
        StageError::Db(e.into())
    }
}
