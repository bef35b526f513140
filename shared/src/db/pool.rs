//! The connection pool. TLS is rustls with compiled-in web PKI roots (no certificate directory
//! read at start-up); with `sslmode=prefer` (the default) it falls back to plain TCP when the
//! server offers no TLS, as a local cluster does.

use std::str::FromStr;

use deadpool_postgres::{Manager, ManagerConfig, RecyclingMethod, Runtime};
use secrecy::{ExposeSecret, SecretString};

use super::DbError;

pub type Pool = deadpool_postgres::Pool;
/// A connection taken from the [`Pool`].
pub type Client = deadpool_postgres::Client;

/// Parses a URL without echoing it (it holds the password) in the error.
pub fn pg_config(url: &SecretString) -> Result<tokio_postgres::Config, DbError> {
    tokio_postgres::Config::from_str(url.expose_secret())
        .map_err(|e| DbError::BadUrl(e.to_string()))
}

/// The rustls connector every PostgreSQL connection uses (the process's one TLS configuration).
pub fn tls_connector() -> Result<tokio_postgres_rustls::MakeRustlsConnect, DbError> {
    let config = crate::tls::client_config().map_err(|e| DbError::Tls(e.to_string()))?;
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
