//! The connection pool. TLS is rustls with compiled-in web PKI roots (no certificate directory
//! read at start-up); with `sslmode=prefer` (the default) it falls back to plain TCP when the
//! server offers no TLS, as a local cluster does.

use std::str::FromStr;
use std::sync::Arc;

use deadpool_postgres::{Manager, ManagerConfig, RecyclingMethod, Runtime};
use secrecy::{ExposeSecret, SecretString};

use super::DbError;

pub type Pool = deadpool_postgres::Pool;

/// Parses a URL without echoing it (it holds the password) in the error.
pub fn pg_config(url: &SecretString) -> Result<tokio_postgres::Config, DbError> {
    tokio_postgres::Config::from_str(url.expose_secret())
        .map_err(|e| DbError::BadUrl(e.to_string()))
}

/// The rustls connector every PostgreSQL connection uses.
pub fn tls_connector() -> Result<tokio_postgres_rustls::MakeRustlsConnect, DbError> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| DbError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// Builds a pool; connections are made lazily, so a function's cold start opens none.
pub fn connect(url: &SecretString, max_size: usize) -> Result<Pool, DbError> {
    let config = pg_config(url)?;
    let manager = Manager::from_config(
        config,
        tls_connector()?,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(max_size)
        .runtime(Runtime::Tokio1)
        .build()
        .map_err(|e| DbError::BadUrl(e.to_string()))
}
