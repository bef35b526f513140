//! Observability: one place that builds the tracing subscriber, and the PII hasher every log line
//! that mentions a person goes through.

pub mod metrics;
mod pii;

pub use pii::{hash_email, hash_pii};

/// JSON logs for CloudWatch: no ANSI, no timestamp (CloudWatch stamps each line), the level
/// from `RUST_LOG` (default `info`; release builds compile out debug and trace, see the workspace
/// `Cargo.toml`). Safe to call twice (the second call does nothing).
pub fn init_tracing() {
    init_tracing_to(std::io::stdout);
}

/// The same subscriber writing to `writer`: a test reads exactly what a function would log.
pub fn init_tracing_to<W>(writer: W)
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_writer(writer)
        .with_env_filter(filter)
        .with_ansi(false)
        .without_time()
        .with_current_span(true)
        .with_target(false)
        .try_init();
}
