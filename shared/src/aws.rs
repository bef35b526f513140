//! AWS SDK configuration, built once per container. In Lambda the credentials come from the
//! environment (no instance-metadata probing); locally and in tests `AWS_ENDPOINT_URL` points
//! every client at moto.

use aws_config::{BehaviorVersion, Region};

pub use aws_config::SdkConfig;

/// The shared SDK configuration; `endpoint` overrides the service endpoints (moto).
pub async fn sdk_config(endpoint: Option<&str>) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(url) = endpoint {
        loader = loader.endpoint_url(url);
    }
    if std::env::var_os("AWS_REGION").is_none() && std::env::var_os("AWS_DEFAULT_REGION").is_none()
    {
        loader = loader.region(Region::new("us-east-1"));
    }
    loader.load().await
}
