//! Hot-path statements on statements prepared once per connection.
//!
//! `tokio_postgres` runs a statement given as text in three steps: prepare (a round trip), execute
//! (another), then close the statement it prepared. The pool's per-connection cache keeps the
//! prepared statement, so after a connection's first batch each of these costs one round trip and
//! the server neither parses nor plans it again. Statements whose result columns could change with
//! a migration (`SELECT *`, `RETURNING *`) must not come through here: a cached plan cannot change
//! its result type.

use async_trait::async_trait;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::DbError;

/// Statement parameters.
pub type Params<'p> = &'p [&'p (dyn ToSql + Sync)];

/// A tenant-scoped transaction that runs cached statements: the pool's transaction (what
/// [`super::begin_tenant`] returns) or the batch runner's [`super::PipelinedTx`], so the code
/// that stores a stage's results does not care which.
#[async_trait]
pub trait Tx: Sync {
    /// The rows `sql` returns.
    async fn query_cached(&self, sql: &str, params: Params<'_>) -> Result<Vec<Row>, DbError>;
    /// Executes `sql`; the number of rows it changed.
    async fn execute_cached(&self, sql: &str, params: Params<'_>) -> Result<u64, DbError>;
}

#[async_trait]
impl Tx for deadpool_postgres::Transaction<'_> {
    async fn query_cached(&self, sql: &str, params: Params<'_>) -> Result<Vec<Row>, DbError> {
        let st = self.prepare_cached(sql).await?;
        Ok(self.client().query(&st, params).await?)
    }

    async fn execute_cached(&self, sql: &str, params: Params<'_>) -> Result<u64, DbError> {
        let st = self.prepare_cached(sql).await?;
        Ok(self.client().execute(&st, params).await?)
    }
}

/// A transaction borrowed as `tokio_postgres`'s type (through the pool's `Deref`): its statements
/// are prepared per call, for the paths that run a statement once per request.
#[async_trait]
impl Tx for tokio_postgres::Transaction<'_> {
    async fn query_cached(&self, sql: &str, params: Params<'_>) -> Result<Vec<Row>, DbError> {
        Ok(self.query(sql, params).await?)
    }

    async fn execute_cached(&self, sql: &str, params: Params<'_>) -> Result<u64, DbError> {
        Ok(self.execute(sql, params).await?)
    }
}

/// Executes `sql`; the number of rows it changed.
pub async fn execute(tx: &dyn Tx, sql: &str, params: Params<'_>) -> Result<u64, DbError> {
    tx.execute_cached(sql, params).await
}

/// Executes `sql` if there is something to write (`when`): an optional write that can still be
/// joined with others, so independent writes travel together in one round trip. Joined writes
/// must be independent: a statement not yet prepared on the connection is sent after its
/// prepare's answer, so behind those joined after it.
pub async fn execute_if(
    tx: &dyn Tx,
    when: bool,
    sql: &str,
    params: Params<'_>,
) -> Result<u64, DbError> {
    if !when {
        return Ok(0);
    }
    tx.execute_cached(sql, params).await
}

/// The rows `sql` returns.
pub async fn query(tx: &dyn Tx, sql: &str, params: Params<'_>) -> Result<Vec<Row>, DbError> {
    tx.query_cached(sql, params).await
}

/// The row `sql` returns, if any (an error if more than one).
pub async fn query_opt(tx: &dyn Tx, sql: &str, params: Params<'_>) -> Result<Option<Row>, DbError> {
    let mut rows = tx.query_cached(sql, params).await?;
    match rows.len() {
        0 | 1 => Ok(rows.pop()),
        got => Err(DbError::UnexpectedRows {
            expected: "at most one",
            got,
        }),
    }
}

/// The one row `sql` returns (an error if none or more).
pub async fn query_one(tx: &dyn Tx, sql: &str, params: Params<'_>) -> Result<Row, DbError> {
    let mut rows = tx.query_cached(sql, params).await?;
    match (rows.pop(), rows.len()) {
        (Some(row), 0) => Ok(row),
        (last, before) => Err(DbError::UnexpectedRows {
            expected: "exactly one",
            got: before + usize::from(last.is_some()),
        }),
    }
}
