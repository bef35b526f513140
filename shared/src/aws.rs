//! AWS SDK configuration, built once per container. In Lambda the credentials come from the
//! environment (the default chain finds them there first); locally and in tests
//! `AWS_ENDPOINT_URL` points every client at moto. The HTTPS client trusts the compiled-in
//! Mozilla roots instead of reading the system certificate directory at start-up (measured:
//! that read was about half of a function's init — see docs/performance.md).

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
