//! AWS SDK configuration, loaded on first use and shared by every client of the process. In
//! Lambda the region and credentials are read from the environment (no provider chains walked);
//! locally and in tests `AWS_ENDPOINT_URL` points every client at moto. The HTTPS client trusts
//! the compiled-in Mozilla roots instead of reading the system certificate directory (measured:
//! that read was about half of a function's init — see docs/performance.md).

use std::sync::Arc;

use aws_config::{BehaviorVersion, Region};

pub use aws_config::SdkConfig;

/// The SDK configuration, loaded on first use and then shared by every client of the process.
/// Loading it (credential and region chains, profile files, the HTTPS client's trust store) was
/// most of an SDK-using function's cold start; an event that makes no AWS call now pays nothing.
#[derive(Debug, Default)]
pub struct LazySdk {
    endpoint: Option<String>,
    cell: tokio::sync::OnceCell<SdkConfig>,
}

impl LazySdk {
    /// `endpoint` overrides the service endpoints (moto), as in [`sdk_config`].
    pub fn new(endpoint: Option<String>) -> Arc<Self> {
        Arc::new(Self {
            endpoint,
            cell: tokio::sync::OnceCell::new(),
        })
    }

    /// Already loaded (tests and tools that hold a configuration).
    pub fn loaded(sdk: SdkConfig) -> Arc<Self> {
        Arc::new(Self {
            endpoint: sdk.endpoint_url().map(str::to_owned),
            cell: tokio::sync::OnceCell::new_with(Some(sdk)),
        })
    }

    pub async fn get(&self) -> &SdkConfig {
        self.cell
            .get_or_init(|| sdk_config(self.endpoint.as_deref()))
            .await
    }
}

/// An SDK client built from the [`LazySdk`] on first use.
pub struct LazyClient<C> {
    sdk: Arc<LazySdk>,
    make: fn(&SdkConfig) -> C,
    cell: tokio::sync::OnceCell<C>,
}

impl<C> LazyClient<C> {
    pub fn new(sdk: Arc<LazySdk>, make: fn(&SdkConfig) -> C) -> Self {
        Self {
            sdk,
            make,
            cell: tokio::sync::OnceCell::new(),
        }
    }

    /// Already built.
    pub fn ready(client: C) -> Self {
        Self {
            sdk: Arc::default(),
            make: |_| unreachable!("a ready client is never built"),
            cell: tokio::sync::OnceCell::new_with(Some(client)),
        }
    }

    pub async fn get(&self) -> &C {
        self.cell
            .get_or_init(|| async { (self.make)(self.sdk.get().await) })
            .await
    }
}

impl<C> std::fmt::Debug for LazyClient<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LazyClient")
            .field("built", &self.cell.initialized())
            .finish_non_exhaustive()
    }
}

/// The first configuration loaded in this process, with the endpoint it was loaded for.
static PROCESS_SDK: tokio::sync::OnceCell<(Option<String>, SdkConfig)> =
    tokio::sync::OnceCell::const_new();

/// The shared SDK configuration; `endpoint` overrides the service endpoints (moto). Loaded once
/// per process: Secrets Manager at start-up and the clients built later share it.
pub async fn sdk_config(endpoint: Option<&str>) -> aws_config::SdkConfig {
    let (first, sdk) = PROCESS_SDK
        .get_or_init(|| async { (endpoint.map(str::to_owned), load(endpoint).await) })
        .await;
    if first.as_deref() == endpoint {
        sdk.clone()
    } else {
        load(endpoint).await
    }
}

async fn load(endpoint: Option<&str>) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(url) = endpoint {
        loader = loader.endpoint_url(url);
    }
    // Lambda puts the region and the role's credentials in the environment: take them from there
    // rather than walking the provider chains (profile files, then IMDS).
    let region = std::env::var("AWS_REGION")
        .or_else(|_| std::env::var("AWS_DEFAULT_REGION"))
        .unwrap_or_else(|_| "us-east-1".to_owned());
    loader = loader.region(Region::new(region));
    if std::env::var_os("AWS_ACCESS_KEY_ID").is_some()
        && std::env::var_os("AWS_SECRET_ACCESS_KEY").is_some()
    {
        loader = loader.credentials_provider(
            aws_config::environment::EnvironmentVariableCredentialsProvider::new(),
        );
    }
    use aws_smithy_http_client::tls;
    // The SDK's HTTPS client over rustls with the compiled-in roots.
    let mut store = tls::TrustStore::empty();
    for der in webpki_root_certs::TLS_SERVER_ROOT_CERTS {
        store.add_pem_certificate(pem(der.as_ref()));
    }
    let builder = aws_smithy_http_client::Builder::new().tls_provider(tls::Provider::Rustls(
        tls::rustls_provider::CryptoMode::AwsLc,
    ));
    let client = match tls::TlsContext::builder().with_trust_store(store).build() {
        Ok(ctx) => builder.tls_context(ctx).build_https(),
        // Building the context validates nothing yet; should it ever fail, the default trust
        // store (the system's) still gives a working client.
        Err(_) => builder.build_https(),
    };
    loader.http_client(client).load().await
}

/// A DER certificate as PEM.
fn pem(der: &[u8]) -> Vec<u8> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = Vec::with_capacity(b64.len() + b64.len() / 64 + 60);
    out.extend_from_slice(b"-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out.extend_from_slice(b"-----END CERTIFICATE-----\n");
    out
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn a_lazy_client_is_built_once_on_first_use() {
        static BUILT: AtomicUsize = AtomicUsize::new(0);
        let sdk = LazySdk::new(Some("http://127.0.0.1:9".into()));
        let client = LazyClient::new(sdk.clone(), |cfg| {
            BUILT.fetch_add(1, Ordering::SeqCst);
            cfg.endpoint_url().map(str::to_owned)
        });
        assert_eq!(BUILT.load(Ordering::SeqCst), 0, "nothing built up front");
        let (a, b) = tokio::join!(client.get(), client.get());
        assert_eq!(a, b);
        assert_eq!(a.as_deref(), Some("http://127.0.0.1:9"));
        assert_eq!(BUILT.load(Ordering::SeqCst), 1);
        assert_eq!(sdk.get().await.endpoint_url(), Some("http://127.0.0.1:9"));
        assert_eq!(LazyClient::ready(7).get().await, &7);
    }
}
