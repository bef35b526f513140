//! API keys: `lf_<prefix>_<secret>`. The prefix (public) finds the key through the definer
//! function `api_key_lookup`; only the SHA-256 of the secret is stored, and it is compared in
//! constant time. A key belongs to one tenant, and every query of its requests runs under that
//! tenant with row-level security.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use shared::db::{DbError, Pool, begin_tenant};
use shared::domain::TenantId;
use subtle::ConstantTimeEq;

/// A key as shown once, at creation.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NewKey {
    pub id: uuid::Uuid,
    pub prefix: String,
    /// The whole key: shown once, never stored.
    pub key: String,
}

fn hash(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// Splits `lf_<prefix>_<secret>`.
pub fn parse(key: &str) -> Option<(&str, &str)> {
    let rest = key.strip_prefix("lf_")?;
    let (prefix, secret) = rest.split_once('_')?;
    (prefix.len() == 12 && prefix.bytes().all(|b| b.is_ascii_hexdigit()) && secret.len() >= 32)
        .then_some((prefix, secret))
}

const INSERT_KEY: &str =
    "INSERT INTO api_keys (id, tenant_id, name, prefix, key_hash) VALUES ($1, $2, $3, $4, $5)";

/// Creates a key for `tenant`.
pub async fn create(pool: &Pool, tenant: TenantId, name: &str) -> Result<NewKey, DbError> {
    let prefix = hex::encode(rand::random::<[u8; 6]>());
    let secret = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    let id = uuid::Uuid::new_v4();
    let mut c = pool.get().await?;
    let tx = begin_tenant(&mut c, tenant).await?;
    tx.execute(
        INSERT_KEY,
        &[&id, &tenant.as_uuid(), &name, &prefix, &hash(&secret)],
    )
    .await?;
    tx.commit().await?;
    Ok(NewKey {
        id,
        key: format!("lf_{prefix}_{secret}"),
        prefix,
    })
}

const REVOKE_KEY: &str =
    "UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL";

/// Revokes a key; `false` when the tenant has no such active key.
pub async fn revoke(pool: &Pool, tenant: TenantId, id: uuid::Uuid) -> Result<bool, DbError> {
    let mut c = pool.get().await?;
    let tx = begin_tenant(&mut c, tenant).await?;
    let n = tx.execute(REVOKE_KEY, &[&id]).await?;
    tx.commit().await?;
    Ok(n == 1)
}

const LIVE_KEY_NAME: &str = "SELECT name FROM api_keys WHERE id = $1 AND revoked_at IS NULL";

/// Revokes `id` and creates its replacement with the same name.
pub async fn rotate(
    pool: &Pool,
    tenant: TenantId,
    id: uuid::Uuid,
) -> Result<Option<NewKey>, DbError> {
    let mut c = pool.get().await?;
    let tx = begin_tenant(&mut c, tenant).await?;
    let name: Option<String> = tx
        .query_opt(LIVE_KEY_NAME, &[&id])
        .await?
        .map(|r| r.get("name"));
    tx.commit().await?;
    let Some(name) = name else { return Ok(None) };
    let new = create(pool, tenant, &name).await?;
    revoke(pool, tenant, id).await?;
    Ok(Some(new))
}

const LIST_KEYS: &str = "SELECT id, name, prefix, created_at, last_used_at, revoked_at FROM api_keys ORDER BY created_at";

/// A tenant's keys: (id, name, prefix, created, last used, revoked).
pub async fn list(pool: &Pool, tenant: TenantId) -> Result<Vec<serde_json::Value>, DbError> {
    let mut c = pool.get().await?;
    let tx = begin_tenant(&mut c, tenant).await?;
    let rows = tx.query(LIST_KEYS, &[]).await?;
    tx.commit().await?;
    Ok(rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "id": r.get::<_, uuid::Uuid>("id"), "name": r.get::<_, String>("name"), "prefix": r.get::<_, String>("prefix"),
                "created_at": r.get::<_, chrono::DateTime<chrono::Utc>>("created_at"),
                "last_used_at": r.get::<_, Option<chrono::DateTime<chrono::Utc>>>("last_used_at"),
                "revoked_at": r.get::<_, Option<chrono::DateTime<chrono::Utc>>>("revoked_at"),
            })
        })
        .collect())
}

const LOOKUP_KEY: &str = "SELECT key_id, tenant_id, key_hash FROM api_key_lookup($1)";

/// The tenant a presented key belongs to, if it is valid and not revoked.
pub async fn authenticate(
    pool: &Pool,
    presented: &str,
) -> Result<Option<(uuid::Uuid, TenantId)>, DbError> {
    let Some((prefix, secret)) = parse(presented) else {
        return Ok(None);
    };
    let c = pool.get().await?;
    let st = c.prepare_cached(LOOKUP_KEY).await?;
    let row = c.query_opt(&st, &[&prefix]).await?;
    let Some(row) = row else { return Ok(None) };
    let stored: Vec<u8> = row.get("key_hash");
    if !bool::from(stored.as_slice().ct_eq(&hash(secret))) {
        return Ok(None);
    }
    Ok(Some((
        row.get("key_id"),
        TenantId::from_uuid(row.get("tenant_id")),
    )))
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_only_well_formed_keys() {
        let k = format!("lf_0123456789ab_{}", "s".repeat(43));
        assert_eq!(super::parse(&k), Some(("0123456789ab", &*"s".repeat(43))));
        for bad in [
            "",
            "lf_",
            "lf_short_secret",
            "xx_0123456789ab_ssssssssssssssssssssssssssssssssssss",
            &format!("lf_0123456789zz_{}", "s".repeat(43)),
        ] {
            assert_eq!(super::parse(bad), None, "{bad}");
        }
    }
}
