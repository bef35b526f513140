//! The row-level-security contract: every tenant-owned statement runs inside a transaction that
//! has set `app.tenant_id`, which the policies read through `app_current_tenant()`. `SET LOCAL`
//! ends with the transaction, so a pooled connection never carries a tenant to its next user.

use deadpool_postgres::Transaction;

use super::DbError;
use crate::domain::TenantId;

/// The statement that scopes a transaction. A `TenantId` is a parsed UUID (hex and dashes only),
/// so formatting it into SQL cannot inject anything, and the simple-query protocol saves the
/// prepare round trip a parameterised `set_config` would cost.
pub fn with_tenant_setting(tenant: TenantId) -> String {
    format!("SET LOCAL app.tenant_id = '{}'", tenant.as_uuid())
}

/// Begins a transaction scoped to `tenant`.
pub async fn begin_tenant(
    client: &mut deadpool_postgres::Client,
    tenant: TenantId,
) -> Result<Transaction<'_>, DbError> {
    let tx = client.transaction().await?;
    tx.batch_execute(&with_tenant_setting(tenant)).await?;
    Ok(tx)
}

/// Runs one tenant-scoped statement in a transaction of its own, in one round trip: the start of
/// the transaction (with the tenant set), the statement and the commit are sent together and the
/// server runs them in order. If the statement fails, the server has aborted the transaction and
/// the `COMMIT` ends it as a rollback, so the connection goes back to the pool idle either way.
/// The statement is prepared (once per connection) before anything is sent: a statement given as
/// text would be prepared in a round trip of its own, after the commit had already gone.
pub async fn execute_alone(
    client: &deadpool_postgres::Client,
    tenant: TenantId,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<u64, DbError> {
    let statement = client.prepare_cached(sql).await?;
    let begin = format!("START TRANSACTION; {}", with_tenant_setting(tenant));
    // `join3` polls in argument order, and each request is queued on its first poll.
    let (begun, executed, committed) = futures_util::future::join3(
        client.batch_execute(&begin),
        client.execute(&statement, params),
        client.batch_execute("COMMIT"),
    )
    .await;
    begun?;
    let n = executed?;
    committed?;
    Ok(n)
}

/// As [`execute_alone`], for a statement that returns rows: one tenant-scoped read in one
/// round trip (the HTTP functions' reads, where begin, scope, query and commit one after the
/// other would be four).
pub async fn query_alone(
    client: &deadpool_postgres::Client,
    tenant: TenantId,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Vec<tokio_postgres::Row>, DbError> {
    let statement = client.prepare_cached(sql).await?;
    let begin = format!("START TRANSACTION; {}", with_tenant_setting(tenant));
    // `join3` polls in argument order, and each request is queued on its first poll.
    let (begun, rows, committed) = futures_util::future::join3(
        client.batch_execute(&begin),
        client.query(&statement, params),
        client.batch_execute("COMMIT"),
    )
    .await;
    begun?;
    let rows = rows?;
    committed?;
    Ok(rows)
}

const TENANT_IDS: &str = "SELECT list_tenant_ids() AS id";

/// Every tenant (through the `list_tenant_ids` definer function): scheduled jobs work tenant by
/// tenant, each under its own RLS scope.
pub async fn tenant_ids(client: &deadpool_postgres::Client) -> Result<Vec<TenantId>, DbError> {
    Ok(client
        .query(TENANT_IDS, &[])
        .await?
        .iter()
        .map(|r| TenantId::from_uuid(r.get("id")))
        .collect())
}
