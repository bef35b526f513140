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

/// Every tenant (through the `list_tenant_ids` definer function): scheduled jobs work tenant by
/// tenant, each under its own RLS scope.
pub async fn tenant_ids(client: &deadpool_postgres::Client) -> Result<Vec<TenantId>, DbError> {
    Ok(client
        .query("SELECT list_tenant_ids()", &[])
        .await?
        .iter()
        .map(|r| TenantId::from_uuid(r.get(0)))
        .collect())
}
