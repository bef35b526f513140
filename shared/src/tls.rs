//! One TLS client configuration for every outbound connection of a process: rustls over
//! aws-lc with the compiled-in web PKI roots. Built once, on first use, and cloned (cheaply:
//! its parts are shared) into each client. Measured: letting each `reqwest` client find the
//! platform's roots read `/etc/ssl/certs/ca-certificates.crt` per client, about 1 ms of every
//! cold start per vendor (docs/performance.md).

use std::sync::{Arc, OnceLock};

/// Why the configuration could not be built (only if aws-lc refused every protocol version).
#[derive(Debug, Clone, thiserror::Error)]
#[error("TLS configuration: {0}")]
pub struct TlsError(String);

static CONFIG: OnceLock<Result<rustls::ClientConfig, TlsError>> = OnceLock::new();

/// The process's client configuration (no ALPN: our clients speak HTTP/1.1).
pub fn client_config() -> Result<rustls::ClientConfig, TlsError> {
    CONFIG.get_or_init(build).clone()
}

fn build() -> Result<rustls::ClientConfig, TlsError> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// A `reqwest` builder that uses [`client_config`] instead of loading the platform's roots.
pub fn reqwest_builder() -> Result<reqwest::ClientBuilder, TlsError> {
    Ok(reqwest::Client::builder().tls_backend_preconfigured(client_config()?))
}

/// A `reqwest` client (on [`client_config`]) built on its first request: a cold start whose
/// first event calls no one builds none (measured: about 0.5 ms of init per client).
pub struct LazyHttp {
    configure: Box<dyn Fn(reqwest::ClientBuilder) -> reqwest::ClientBuilder + Send + Sync>,
    cell: OnceLock<Result<reqwest::Client, String>>,
}

/// Why the client could not be built (a bad setting or the TLS configuration).
#[derive(Debug, Clone, thiserror::Error)]
#[error("HTTP client: {0}")]
pub struct HttpClientError(String);

impl LazyHttp {
    /// `configure` adds the client's settings (timeouts, redirects, user agent) to the builder.
    pub fn new(
        configure: impl Fn(reqwest::ClientBuilder) -> reqwest::ClientBuilder + Send + Sync + 'static,
    ) -> Self {
        Self {
            configure: Box::new(configure),
            cell: OnceLock::new(),
        }
    }

    pub fn get(&self) -> Result<&reqwest::Client, HttpClientError> {
        self.cell
            .get_or_init(|| {
                let builder = reqwest_builder().map_err(|e| e.to_string())?;
                (self.configure)(builder).build().map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|e| HttpClientError(e.clone()))
    }
}

impl std::fmt::Debug for LazyHttp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LazyHttp")
            .field("built", &self.cell.get().is_some())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_configuration_with_the_web_roots() {
        let a = client_config().unwrap();
        assert!(a.alpn_protocols.is_empty());
        // Same root store behind both clones: built once.
        let b = client_config().unwrap();
        assert_eq!(
            format!("{:?}", a.crypto_provider()),
            format!("{:?}", b.crypto_provider())
        );
        assert!(reqwest_builder().unwrap().build().is_ok());
    }

    #[test]
    fn a_lazy_client_is_built_on_first_use_and_reports_bad_settings() {
        let ok = LazyHttp::new(|b| b.timeout(std::time::Duration::from_secs(1)));
        assert!(format!("{ok:?}").contains("built: false"));
        assert!(ok.get().is_ok());
        assert!(format!("{ok:?}").contains("built: true"));
        let bad = LazyHttp::new(|b| b.user_agent("bad\nagent"));
        let err = bad.get().unwrap_err().to_string();
        assert!(err.starts_with("HTTP client:"), "{err}");
        assert!(bad.get().is_err(), "the failure is kept, not retried");
    }
}
