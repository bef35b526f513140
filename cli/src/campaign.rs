//! Campaign files (TOML), validated into the campaign row.

use serde::Deserialize;
use shared::domain::{CampaignId, Email, TenantId, Tier};

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
    Db(#[from] shared::db::DbError),
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
        if let Some(t) = self.qualify_tiers.iter().find(|t| Tier::parse(t).is_err()) {
            return bad("qualify_tiers", format!("{t:?} is not A, B, C or D"));
        }
        Ok(())
    }

    /// Creates or updates the campaign (by name) for `tenant`; returns its id.
    pub async fn upsert(
        &self,
        client: &mut shared::db::Pool,
        tenant: TenantId,
    ) -> Result<CampaignId, CampaignError> {
        let mut conn = client.get().await.map_err(shared::db::DbError::from)?;
        let tx = shared::db::begin_tenant(&mut conn, tenant).await?;
        let row = tx
            .query_one(
                "INSERT INTO campaigns (id, tenant_id, name, vertical, categories, zip_codes, city, daily_quota, sender_email, sender_name, postal_address, qualify_tiers)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
                 ON CONFLICT (tenant_id, name) DO UPDATE SET vertical = EXCLUDED.vertical, categories = EXCLUDED.categories,
                    zip_codes = EXCLUDED.zip_codes, city = EXCLUDED.city, daily_quota = EXCLUDED.daily_quota,
                    sender_email = EXCLUDED.sender_email, sender_name = EXCLUDED.sender_name, postal_address = EXCLUDED.postal_address,
                    qualify_tiers = EXCLUDED.qualify_tiers, status = 'active', updated_at = now()
                 RETURNING id",
                &[
                    &CampaignId::new().as_uuid(), &tenant.as_uuid(), &self.name, &self.vertical, &self.categories, &self.zip_codes,
                    &self.city, &(self.daily_quota as i32), &self.sender.email, &self.sender.name, &self.sender.postal_address,
                    &self.qualify_tiers.iter().map(|t| t.to_uppercase()).collect::<Vec<_>>(),
                ],
            )
            .await
            .map_err(shared::db::DbError::from)?;
        tx.commit().await.map_err(shared::db::DbError::from)?;
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
