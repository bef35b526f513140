//! Hot-path statements on statements prepared once per connection.
//!
//! `tokio_postgres` runs a statement given as text in three steps: prepare (a round trip), execute
//! (another), then close the statement it prepared. The pool's per-connection cache keeps the
//! prepared statement, so after a connection's first batch each of these costs one round trip and
//! the server neither parses nor plans it again. Statements whose result columns could change with
//! a migration (`SELECT *`, `RETURNING *`) must not come through here: a cached plan cannot change
//! its result type.

use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::DbError;

/// A transaction from the pool (what [`super::begin_tenant`] returns); it has the cache.
pub type Tx<'a> = deadpool_postgres::Transaction<'a>;

type Params<'p> = &'p [&'p (dyn ToSql + Sync)];

/// Executes `sql`; the number of rows it changed.
pub async fn execute(tx: &Tx<'_>, sql: &str, params: Params<'_>) -> Result<u64, DbError> {
    let st = tx.prepare_cached(sql).await?;
    Ok(tx.execute(&st, params).await?)
}

/// The rows `sql` returns.
pub async fn query(tx: &Tx<'_>, sql: &str, params: Params<'_>) -> Result<Vec<Row>, DbError> {
    let st = tx.prepare_cached(sql).await?;
    Ok(tx.query(&st, params).await?)
}

/// The row `sql` returns, if any (an error if more than one).
pub async fn query_opt(tx: &Tx<'_>, sql: &str, params: Params<'_>) -> Result<Option<Row>, DbError> {
    let st = tx.prepare_cached(sql).await?;
    Ok(tx.query_opt(&st, params).await?)
}

/// The one row `sql` returns (an error if none or more).
pub async fn query_one(tx: &Tx<'_>, sql: &str, params: Params<'_>) -> Result<Row, DbError> {
    let st = tx.prepare_cached(sql).await?;
    Ok(tx.query_one(&st, params).await?)
}
