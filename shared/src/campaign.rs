//! A campaign as operators write it — a TOML file for the CLI, a JSON body for the ops API —
//! validated field by field into the campaign row.

use crate::domain::{CampaignId, Email, TenantId, Tier};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CampaignFile {
    pub name: String,
    pub vertical: String,
    #[serde(default)]
    pub categories: Vec<String>,
    #[serde(default)]
    pub zip_codes: Vec<String>,
    pub city: Option<String>,
    pub daily_quota: u32,
    #[serde(default = "default_tiers")]
    pub qualify_tiers: Vec<String>,
    pub sender: Sender,
    /// `active` (default), `paused` or `archived`.
    #[serde(default)]
    pub status: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sender {
    pub email: String,
    pub name: String,
    pub postal_address: String,
}

fn default_tiers() -> Vec<String> {
    vec!["A".into(), "B".into()]
}

#[derive(Debug, thiserror::Error)]
pub enum CampaignError {
    #[error("campaign file {path}: {detail}")]
    File { path: String, detail: String },
    #[error("campaign {field}: {detail}")]
    Invalid { field: &'static str, detail: String },
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
}

impl CampaignFile {
    pub fn load(path: &std::path::Path) -> Result<Self, CampaignError> {
        let text = std::fs::read_to_string(path).map_err(|e| CampaignError::File {
            path: path.display().to_string(),
            detail: e.to_string(),
        })?;
        let c: CampaignFile = toml::from_str(&text).map_err(|e| CampaignError::File {
            path: path.display().to_string(),
            detail: e.to_string(),
        })?;
        c.validate()?;
        Ok(c)
    }

    pub fn validate(&self) -> Result<(), CampaignError> {
        let bad = |field, detail: String| Err(CampaignError::Invalid { field, detail });
        if self.name.trim().is_empty() {
            return bad("name", "is empty".into());
        }
        if self.daily_quota == 0 || self.daily_quota > 10_000 {
            return bad(
                "daily_quota",
                format!("{} is outside 1..=10000", self.daily_quota),
            );
        }
        if self.zip_codes.is_empty() && self.city.is_none() {
            return bad("zip_codes", "give ZIP codes or a city".into());
        }
        if let Some(z) = self
            .zip_codes
            .iter()
            .find(|z| z.len() != 5 || !z.chars().all(|c| c.is_ascii_digit()))
        {
            return bad("zip_codes", format!("{z:?} is not a five-digit ZIP"));
        }
        if let Err(e) = Email::parse(&self.sender.email) {
            return bad("sender.email", e.to_string());
        }
        if self.sender.postal_address.trim().len() < 10 {
            return bad(
                "sender.postal_address",
                "a full postal address is required (CAN-SPAM)".into(),
            );
        }
        if self.vertical.trim().is_empty() {
            return bad("vertical", "is empty".into());
        }
        if let Some(s) = self
            .status
            .as_deref()
            .filter(|s| !matches!(*s, "active" | "paused" | "archived"))
        {
            return bad("status", format!("{s:?} is not active, paused or archived"));
        }
        if let Some(t) = self.qualify_tiers.iter().find(|t| Tier::parse(t).is_err()) {
            return bad("qualify_tiers", format!("{t:?} is not A, B, C or D"));
        }
        Ok(())
    }

    /// Parses and validates a JSON body (the ops API): unknown fields are refused by name.
    pub fn from_json(body: &[u8]) -> Result<Self, CampaignError> {
        let c: CampaignFile = serde_json::from_slice(body).map_err(|e| CampaignError::File {
            path: "request body".into(),
            detail: e.to_string(),
        })?;
        c.validate()?;
        Ok(c)
    }

    /// Replaces campaign `id` of `tenant` with this one; `false` when there is no such campaign
    /// (or another of the tenant's campaigns already has the name: see the error).
    pub async fn update(
        &self,
        pool: &crate::db::Pool,
        tenant: TenantId,
        id: CampaignId,
    ) -> Result<bool, CampaignError> {
        let mut conn = pool.get().await.map_err(crate::db::DbError::from)?;
        let tx = crate::db::begin_tenant(&mut conn, tenant).await?;
        let n = tx
            .execute(
                "UPDATE campaigns SET name = $2, vertical = $3, categories = $4, zip_codes = $5, city = $6, daily_quota = $7,
                        sender_email = $8, sender_name = $9, postal_address = $10, qualify_tiers = $11,
                        status = coalesce($12, status), updated_at = now()
                 WHERE id = $1",
                &[
                    &id.as_uuid(), &self.name, &self.vertical, &self.categories, &self.zip_codes, &self.city,
                    &(self.daily_quota as i32), &self.sender.email, &self.sender.name, &self.sender.postal_address,
                    &self.qualify_tiers.iter().map(|t| t.to_uppercase()).collect::<Vec<_>>(), &self.status,
                ],
            )
            .await
            .map_err(crate::db::DbError::from)?;
        tx.commit().await.map_err(crate::db::DbError::from)?;
        Ok(n == 1)
    }

    /// Creates or updates the campaign (by name) for `tenant`; returns its id.
    pub async fn upsert(
        &self,
        client: &mut crate::db::Pool,
        tenant: TenantId,
    ) -> Result<CampaignId, CampaignError> {
        let mut conn = client.get().await.map_err(crate::db::DbError::from)?;
        let tx = crate::db::begin_tenant(&mut conn, tenant).await?;
        let row = tx
            .query_one(
                "INSERT INTO campaigns (id, tenant_id, name, vertical, categories, zip_codes, city, daily_quota, sender_email, sender_name, postal_address, qualify_tiers, status)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, coalesce($13, 'active'))
                 ON CONFLICT (tenant_id, name) DO UPDATE SET vertical = EXCLUDED.vertical, categories = EXCLUDED.categories,
                    zip_codes = EXCLUDED.zip_codes, city = EXCLUDED.city, daily_quota = EXCLUDED.daily_quota,
                    sender_email = EXCLUDED.sender_email, sender_name = EXCLUDED.sender_name, postal_address = EXCLUDED.postal_address,
                    qualify_tiers = EXCLUDED.qualify_tiers, status = coalesce($13, 'active'), updated_at = now()
                 RETURNING id",
                &[
                    &CampaignId::new().as_uuid(), &tenant.as_uuid(), &self.name, &self.vertical, &self.categories, &self.zip_codes,
                    &self.city, &(self.daily_quota as i32), &self.sender.email, &self.sender.name, &self.sender.postal_address,
                    &self.qualify_tiers.iter().map(|t| t.to_uppercase()).collect::<Vec<_>>(),
                    &self.status,
                ],
            )
            .await
            .map_err(crate::db::DbError::from)?;
        tx.commit().await.map_err(crate::db::DbError::from)?;
        Ok(CampaignId::from_uuid(row.get(0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_campaign_is_valid_and_bad_ones_name_the_field() {
        let c = CampaignFile::load(std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../examples/san-jose-restaurants.toml"
        )))
        .unwrap();
        assert_eq!(c.zip_codes, vec!["95113"]);
        let mut bad = c.clone();
        bad.zip_codes = vec!["9511".into()];
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("zip_codes")
        );
        let mut bad = c.clone();
        bad.sender.email = "nope".into();
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("sender.email")
        );
        let mut bad = c;
        bad.qualify_tiers = vec!["E".into()];
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("qualify_tiers")
        );
    }
}
