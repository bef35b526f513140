//! Amazon S3 (and any S3-compatible endpoint, such as moto in tests).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;

use crate::aws::{LazyClient, LazySdk};

use super::{ObjectKey, ObjectStore, StoreError};

#[derive(Debug, Clone)]
pub struct S3Store {
    client: Arc<LazyClient<aws_sdk_s3::Client>>,
    bucket: String,
}

/// The S3 client for shared SDK configuration; path-style addressing when a custom endpoint
/// (moto) is configured, since it has no per-bucket DNS names.
fn s3_client(sdk: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    let path_style = sdk.endpoint_url().is_some();
    let conf = aws_sdk_s3::config::Builder::from(sdk)
        .force_path_style(path_style)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

impl S3Store {
    pub fn new(client: aws_sdk_s3::Client, bucket: impl Into<String>) -> Self {
        Self {
            client: Arc::new(LazyClient::ready(client)),
            bucket: bucket.into(),
        }
    }

    pub fn from_sdk_config(sdk: &aws_config::SdkConfig, bucket: impl Into<String>) -> Self {
        Self::new(s3_client(sdk), bucket)
    }

    /// The client is built on the first request (a function's cold start builds none).
    pub fn lazy(sdk: &Arc<LazySdk>, bucket: impl Into<String>) -> Self {
        Self {
            client: Arc::new(LazyClient::new(sdk.clone(), s3_client)),
            bucket: bucket.into(),
        }
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }
}

fn service_err(key: &str, e: impl std::error::Error) -> StoreError {
    StoreError::Service {
        key: key.to_owned(),
        detail: aws_sdk_s3::error::DisplayErrorContext(e).to_string(),
    }
}

#[async_trait]
impl ObjectStore for S3Store {
    async fn put(
        &self,
        key: &ObjectKey,
        body: Bytes,
        content_type: &str,
    ) -> Result<(), StoreError> {
        self.client
            .get()
            .await
            .put_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .content_type(content_type)
            .body(ByteStream::from(body))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| service_err(key.as_str(), e))
    }

    async fn get(&self, key: &ObjectKey) -> Result<Bytes, StoreError> {
        let out = self
            .client
            .get()
            .await
            .get_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .send()
            .await
            .map_err(|e| match e.as_service_error() {
                Some(se) if se.is_no_such_key() => StoreError::NotFound(key.to_string()),
                _ => service_err(key.as_str(), e),
            })?;
        out.body
            .collect()
            .await
            .map(|d| d.into_bytes())
            .map_err(|e| StoreError::Io {
                key: key.to_string(),
                detail: e.to_string(),
            })
    }

    async fn delete(&self, key: &ObjectKey) -> Result<(), StoreError> {
        self.client
            .get()
            .await
            .delete_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .send()
            .await
            .map(|_| ())
            .map_err(|e| service_err(key.as_str(), e))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectKey>, StoreError> {
        let mut keys = Vec::new();
        let mut pages = self
            .client
            .get()
            .await
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| service_err(prefix, e))?;
            for obj in page.contents() {
                if let Some(k) = obj.key() {
                    keys.push(ObjectKey::parse(k)?);
                }
            }
        }
        keys.sort();
        Ok(keys)
    }

    async fn presign_get(&self, key: &ObjectKey, ttl: Duration) -> Result<String, StoreError> {
        let cfg = PresigningConfig::expires_in(ttl).map_err(|e| service_err(key.as_str(), e))?;
        self.client
            .get()
            .await
            .get_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .presigned(cfg)
            .await
            .map(|r| r.uri().to_owned())
            .map_err(|e| service_err(key.as_str(), e))
    }
}
