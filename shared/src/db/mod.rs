//! PostgreSQL: the pool every function builds once, the embedded migrations, tenant-scoped
//! transactions (the row-level-security contract), and a throwaway local cluster for the CLI and
//! tests.

pub mod cached;
pub mod cluster;
mod migrate;
mod pipelined;
mod pool;
mod tenant;

pub use cached::Tx;
pub use migrate::{MIGRATIONS_APPLIED_TABLE, migrate};
pub use pipelined::PipelinedTx;
pub use pool::{Client, Pool, connect, pg_config, tls_connector};
pub use tenant::{begin_tenant, execute_alone, query_alone, tenant_ids, with_tenant_setting};

/// What can go wrong talking to the database.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database URL is not valid: {0}")]
    BadUrl(String),
    #[error("could not get a database connection: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("database error: {}", describe(.0))]
    Postgres(#[from] tokio_postgres::Error),
    #[error("migration failed: {0}")]
    Migration(String),
    #[error("TLS set-up failed: {0}")]
    Tls(String),
    #[error("the statement returned {got} rows, {expected} expected")]
    UnexpectedRows { expected: &'static str, got: usize },
    #[error("a statement was started after its transaction's end had been sent")]
    AfterCommit,
    #[error("a statement of the transaction failed, so it was rolled back")]
    RolledBack,
    #[error("the transaction was left open; its connection was closed to roll it back")]
    TransactionOpen,
}

/// A server error as its SQLSTATE, constraint and table, never its message: a message can quote
/// the values of a row (`invalid input syntax for type uuid: "…"`), and error texts end up in
/// logs and in rows' `last_error`. A client-side error (connection, protocol) is its display.
pub fn describe(e: &tokio_postgres::Error) -> String {
    let Some(db) = e.as_db_error() else {
        return match std::error::Error::source(e) {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        };
    };
    let mut text = format!("{} (SQLSTATE {})", db.severity(), db.code().code());
    if let Some(table) = db.table() {
        text.push_str(&format!(", table {table}"));
    }
    if let Some(constraint) = db.constraint() {
        text.push_str(&format!(", constraint {constraint}"));
    }
    text
}

impl DbError {
    /// The SQLSTATE of a server-side error, for callers that map constraint violations.
    pub fn sqlstate(&self) -> Option<&tokio_postgres::error::SqlState> {
        match self {
            DbError::Postgres(e) | DbError::Pool(deadpool_postgres::PoolError::Backend(e)) => {
                e.code()
            }
            _ => None,
        }
    }
}
