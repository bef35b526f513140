//! Amazon S3 (and any S3-compatible endpoint, such as moto in tests).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;

use crate::aws::{LazyClient, LazySdk};

use super::{Chunks, ObjectKey, ObjectStore, ObjectWriter, StoreError};

/// The size of a multipart upload's parts: above S3's 5 MiB minimum (every part but the last),
/// and what a streamed write holds in memory.
pub const PART_SIZE: usize = 8 * 1024 * 1024;

/// An object being written as a multipart upload, begun when the first part is full; an
/// object smaller than one part is written with one plain put when it finishes.
struct S3Writer {
    client: aws_sdk_s3::Client,
    bucket: String,
    key: ObjectKey,
    content_type: String,
    buf: bytes::BytesMut,
    upload_id: Option<String>,
    parts: Vec<aws_sdk_s3::types::CompletedPart>,
}

impl S3Writer {
    fn err(&self, e: impl std::error::Error) -> StoreError {
        service_err(self.key.as_str(), e)
    }

    /// Uploads what is buffered as the next part, beginning the upload if need be.
    async fn upload_part(&mut self) -> Result<(), StoreError> {
        // The part's upload, and the upload's creation before the first.
        crate::compute::count(
            crate::compute::Service::S3,
            if self.upload_id.is_some() { 1 } else { 2 },
        );
        let upload_id = match &self.upload_id {
            Some(id) => id.clone(),
            None => {
                let out = self
                    .client
                    .create_multipart_upload()
                    .bucket(&self.bucket)
                    .key(self.key.as_str())
                    .content_type(&self.content_type)
                    .send()
                    .await
                    .map_err(|e| self.err(e))?;
                let id = out.upload_id().ok_or_else(|| StoreError::Service {
                    key: self.key.to_string(),
                    detail: "S3 began a multipart upload without an upload id".into(),
                })?;
                self.upload_id = Some(id.to_owned());
                id.to_owned()
            }
        };
        let number = self.parts.len() as i32 + 1;
        let body = self.buf.split().freeze();
        let out = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(self.key.as_str())
            .upload_id(&upload_id)
            .part_number(number)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| self.err(e))?;
        self.parts.push(
            aws_sdk_s3::types::CompletedPart::builder()
                .set_e_tag(out.e_tag().map(str::to_owned))
                .part_number(number)
                .build(),
        );
        Ok(())
    }
}

#[async_trait]
impl ObjectWriter for S3Writer {
    async fn write(&mut self, chunk: Bytes) -> Result<(), StoreError> {
        self.buf.extend_from_slice(&chunk);
        while self.buf.len() >= PART_SIZE {
            let rest = self.buf.split_off(PART_SIZE);
            self.upload_part().await?;
            self.buf = rest;
        }
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> Result<(), StoreError> {
        let Some(upload_id) = self.upload_id.clone() else {
            let body = self.buf.split().freeze();
            return put_object(
                &self.client,
                &self.bucket,
                &self.key,
                &self.content_type,
                body,
            )
            .await;
        };
        if !self.buf.is_empty() {
            self.upload_part().await?;
        }
        let parts = std::mem::take(&mut self.parts);
        crate::compute::count(crate::compute::Service::S3, 1);
        let done = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(self.key.as_str())
            .upload_id(&upload_id)
            .multipart_upload(
                aws_sdk_s3::types::CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await;
        match done {
            Ok(_) => Ok(()),
            Err(e) => {
                let e = self.err(e);
                self.abort().await;
                Err(e)
            }
        }
    }

    async fn abort(self: Box<Self>) {
        if let Some(id) = &self.upload_id {
            let aborted = self
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(self.key.as_str())
                .upload_id(id)
                .send()
                .await;
            if let Err(e) = aborted {
                // The bucket's lifecycle rule removes incomplete uploads after a day.
                tracing::warn!(key = %self.key, error = %e, "a multipart upload was not aborted");
            }
        }
    }
}

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

/// One plain PUT of a whole object.
async fn put_object(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &ObjectKey,
    content_type: &str,
    body: Bytes,
) -> Result<(), StoreError> {
    crate::compute::count(crate::compute::Service::S3, 1);
    client
        .put_object()
        .bucket(bucket)
        .key(key.as_str())
        .content_type(content_type)
        .body(ByteStream::from(body))
        .send()
        .await
        .map(|_| ())
        .map_err(|e| service_err(key.as_str(), e))
}

/// The object's GET response, its body not yet read; a missing key is [`StoreError::NotFound`].
async fn get_object(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &ObjectKey,
) -> Result<aws_sdk_s3::operation::get_object::GetObjectOutput, StoreError> {
    crate::compute::count(crate::compute::Service::S3, 1);
    client
        .get_object()
        .bucket(bucket)
        .key(key.as_str())
        .send()
        .await
        .map_err(|e| match e.as_service_error() {
            Some(se) if se.is_no_such_key() => StoreError::NotFound(key.to_string()),
            _ => service_err(key.as_str(), e),
        })
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
        put_object(
            self.client.get().await,
            &self.bucket,
            key,
            content_type,
            body,
        )
        .await
    }

    async fn get(&self, key: &ObjectKey) -> Result<Bytes, StoreError> {
        let out = get_object(self.client.get().await, &self.bucket, key).await?;
        out.body
            .collect()
            .await
            .map(aws_sdk_s3::primitives::AggregatedBytes::into_bytes)
            .map_err(|e| StoreError::Io {
                key: key.to_string(),
                detail: e.to_string(),
            })
    }

    async fn delete(&self, key: &ObjectKey) -> Result<(), StoreError> {
        crate::compute::count(crate::compute::Service::S3, 1);
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
            crate::compute::count(crate::compute::Service::S3, 1);
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

    async fn get_stream(&self, key: &ObjectKey) -> Result<Chunks, StoreError> {
        use futures_util::StreamExt;
        let out = get_object(self.client.get().await, &self.bucket, key).await?;
        let key = key.to_string();
        Ok(futures_util::stream::try_unfold(out.body, move |mut body| {
            let key = key.clone();
            async move {
                match body.try_next().await {
                    Ok(Some(chunk)) => Ok(Some((chunk, body))),
                    Ok(None) => Ok(None),
                    Err(e) => Err(StoreError::Io {
                        key,
                        detail: e.to_string(),
                    }),
                }
            }
        })
        .boxed())
    }

    async fn put_writer(
        &self,
        key: &ObjectKey,
        content_type: &str,
    ) -> Result<Box<dyn ObjectWriter>, StoreError> {
        Ok(Box::new(S3Writer {
            client: self.client.get().await.clone(),
            bucket: self.bucket.clone(),
            key: key.clone(),
            content_type: content_type.to_owned(),
            buf: bytes::BytesMut::with_capacity(PART_SIZE),
            upload_id: None,
            parts: Vec::new(),
        }))
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
