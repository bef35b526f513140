//! Migrations from `migrations/`, embedded at compile time and applied by refinery. Running them
//! again is a no-op; a changed, already-applied migration is refused (divergence check).

use super::DbError;

mod embedded {
    refinery::embed_migrations!("../migrations");
}

/// The bookkeeping table refinery keeps.
pub const MIGRATIONS_APPLIED_TABLE: &str = "refinery_schema_history";

/// Applies every pending migration; returns the versions it applied.
pub async fn migrate(client: &mut tokio_postgres::Client) -> Result<Vec<i32>, DbError> {
    let report = embedded::migrations::runner()
        .set_abort_divergent(true)
        .set_abort_missing(true)
        .run_async(client)
        .await
        .map_err(|e| DbError::Migration(e.to_string()))?;
    Ok(report
        .applied_migrations()
        .iter()
        .map(refinery::Migration::version)
        .collect())
}
