//! A campaign as operators write it — a TOML file for the CLI, a JSON body for the ops API —
//! validated field by field into the campaign row.

use crate::domain::{CampaignId, Email, TenantId};
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
    #[serde(deserialize_with = "whole_number")]
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

/// The bounds the document states for a campaign's fields.
pub mod limits {
    /// Characters in a name (the table's `CHECK (length(name) BETWEEN 1 AND 200)`).
    pub const NAME: usize = 200;
    /// Characters in any other text field.
    pub const TEXT: usize = 500;
    /// Entries in a list (categories, ZIP codes).
    pub const ITEMS: usize = 100;
}

/// What is wrong with a text field an operator gives (a campaign's, a pause's reason), if
/// anything: it must have `min..=max` characters, at least one of them other than a space, tab,
/// CR or LF, and no NUL (which PostgreSQL cannot store). `docs/openapi.yaml` states the same as a
/// pattern, so both sides draw the line at the same characters.
pub fn text_problem(v: &str, min: usize, max: usize) -> Option<String> {
    let n = v.chars().count();
    if v.contains('\0') {
        Some("contains a NUL character".to_owned())
    } else if n < min || n > max {
        Some(format!("has {n} characters, outside {min}..={max}"))
    } else if v.chars().all(|c| matches!(c, ' ' | '\t' | '\r' | '\n')) {
        Some("is blank".to_owned())
    } else {
        None
    }
}

fn text(field: &'static str, v: &str, min: usize, max: usize) -> Result<(), CampaignError> {
    match text_problem(v, min, max) {
        Some(detail) => Err(CampaignError::Invalid { field, detail }),
        None => Ok(()),
    }
}

/// A whole number as JSON Schema's `integer` means it: `60` or `60.0` (a JSON number without a
/// fraction), not `60.5`; out-of-range values are refused like any other.
fn whole_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    struct Whole;
    impl serde::de::Visitor<'_> for Whole {
        type Value = u32;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a whole number from 0 to 4294967295")
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<u32, E> {
            u32::try_from(v).map_err(|_| E::custom(format!("{v} is too large")))
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<u32, E> {
            u32::try_from(v).map_err(|_| E::custom(format!("{v} is out of range")))
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<u32, E> {
            if v.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&v) {
                Ok(v as u32)
            } else {
                Err(E::custom(format!("{v} is not a whole number in range")))
            }
        }
    }
    d.deserialize_any(Whole)
}

/// An optional [`whole_number`] field (with `#[serde(default)]`): absent is `None`, `null` is
/// refused as a number would be that is not whole.
pub fn whole_number_opt<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    whole_number(d).map(Some)
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

const UPDATE: &str = "UPDATE campaigns SET name = $2, vertical = $3, categories = $4, zip_codes = $5, city = $6, daily_quota = $7,
        sender_email = $8, sender_name = $9, postal_address = $10, qualify_tiers = $11,
        status = coalesce($12, status), updated_at = now()
 WHERE id = $1";
const UPSERT: &str = "INSERT INTO campaigns (id, tenant_id, name, vertical, categories, zip_codes, city, daily_quota, sender_email, sender_name, postal_address, qualify_tiers, status)
 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, coalesce($13, 'active'))
 ON CONFLICT (tenant_id, name) DO UPDATE SET vertical = EXCLUDED.vertical, categories = EXCLUDED.categories,
    zip_codes = EXCLUDED.zip_codes, city = EXCLUDED.city, daily_quota = EXCLUDED.daily_quota,
    sender_email = EXCLUDED.sender_email, sender_name = EXCLUDED.sender_name, postal_address = EXCLUDED.postal_address,
    qualify_tiers = EXCLUDED.qualify_tiers, status = coalesce($13, 'active'), updated_at = now()
 RETURNING id";

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

    /// Every rule the `campaigns` table enforces, and the ones the document states
    /// (`docs/openapi.yaml`'s `Campaign`), checked before the database sees the row: a request
    /// that breaks one gets a 400 naming the field, never a constraint violation.
    pub fn validate(&self) -> Result<(), CampaignError> {
        let bad = |field, detail: String| Err(CampaignError::Invalid { field, detail });
        text("name", &self.name, 1, limits::NAME)?;
        text("vertical", &self.vertical, 1, limits::TEXT)?;
        if self.categories.len() > limits::ITEMS {
            return bad("categories", format!("more than {} items", limits::ITEMS));
        }
        for c in &self.categories {
            text("categories", c, 1, limits::TEXT)?;
        }
        if self.zip_codes.len() > limits::ITEMS {
            return bad("zip_codes", format!("more than {} items", limits::ITEMS));
        }
        if let Some(z) = self
            .zip_codes
            .iter()
            .find(|z| z.len() != 5 || !z.chars().all(|c| c.is_ascii_digit()))
        {
            return bad("zip_codes", format!("{z:?} is not a five-digit ZIP"));
        }
        if let Some(city) = &self.city {
            text("city", city, 1, limits::TEXT)?;
        }
        if self.zip_codes.is_empty() && self.city.is_none() {
            return bad("zip_codes", "give ZIP codes or a city".into());
        }
        if self.daily_quota == 0 || self.daily_quota > 10_000 {
            return bad(
                "daily_quota",
                format!("{} is outside 1..=10000", self.daily_quota),
            );
        }
        if self.qualify_tiers.is_empty() {
            return bad("qualify_tiers", "name at least one tier".into());
        }
        if let Some(t) = self
            .qualify_tiers
            .iter()
            .find(|t| !matches!(t.as_str(), "A" | "B" | "C" | "D"))
        {
            return bad("qualify_tiers", format!("{t:?} is not A, B, C or D"));
        }
        if let Some(s) = self
            .status
            .as_deref()
            .filter(|s| !matches!(*s, "active" | "paused" | "archived"))
        {
            return bad("status", format!("{s:?} is not active, paused or archived"));
        }
        if self.sender.email != self.sender.email.trim() {
            return bad("sender.email", "has spaces around it".into());
        }
        if let Err(e) = Email::parse(&self.sender.email) {
            return bad("sender.email", e.to_string());
        }
        text("sender.name", &self.sender.name, 1, limits::NAME)?;
        text(
            "sender.postal_address",
            &self.sender.postal_address,
            10,
            limits::TEXT,
        )
        .map_err(|_| CampaignError::Invalid {
            field: "sender.postal_address",
            detail: format!(
                "a full postal address of {} to {} characters is required (CAN-SPAM)",
                10,
                limits::TEXT
            ),
        })?;
        Ok(())
    }

    /// Parses and validates a JSON body (the ops API): unknown fields are refused by name.
    pub fn from_json(body: &[u8]) -> Result<Self, CampaignError> {
        // The error names the field it is about (`daily_quota: 2.5 is not a whole number…`).
        let bad = |detail: String| CampaignError::File {
            path: "request body".into(),
            detail,
        };
        let c: CampaignFile = crate::lambda::http::parse_json(body).map_err(bad)?;
        c.validate()?;
        Ok(c)
    }

    /// Replaces campaign `id` of `tenant` with this one; `false` when there is no such campaign
    /// (or another of the tenant's campaigns already has the name: see the error).
    /// The columns whose stored form differs from the field: the daily quota as `int4` (it is
    /// validated to at most 10,000) and the qualifying tiers as the `tier` enum spells them.
    fn stored(&self) -> (i32, Vec<String>) {
        (
            self.daily_quota as i32,
            self.qualify_tiers
                .iter()
                .map(|t| t.to_uppercase())
                .collect(),
        )
    }

    /// `keys` followed by the campaign's columns, name to status, in the order [`UPDATE`] and
    /// [`UPSERT`] take them.
    fn params<'a>(
        &'a self,
        keys: &[&'a (dyn tokio_postgres::types::ToSql + Sync)],
        (quota, tiers): &'a (i32, Vec<String>),
    ) -> Vec<&'a (dyn tokio_postgres::types::ToSql + Sync)> {
        let mut params = keys.to_vec();
        params.extend_from_slice(&[
            &self.name,
            &self.vertical,
            &self.categories,
            &self.zip_codes,
            &self.city,
            quota,
            &self.sender.email,
            &self.sender.name,
            &self.sender.postal_address,
            tiers,
            &self.status,
        ]);
        params
    }

    pub async fn update(
        &self,
        pool: &crate::db::Pool,
        tenant: TenantId,
        id: CampaignId,
    ) -> Result<bool, CampaignError> {
        let mut conn = pool.get().await.map_err(crate::db::DbError::from)?;
        let tx = crate::db::begin_tenant(&mut conn, tenant).await?;
        let n = tx
            .execute(UPDATE, &self.params(&[&id.as_uuid()], &self.stored()))
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
                UPSERT,
                &self.params(
                    &[&CampaignId::new().as_uuid(), &tenant.as_uuid()],
                    &self.stored(),
                ),
            )
            .await
            .map_err(crate::db::DbError::from)?;
        tx.commit().await.map_err(crate::db::DbError::from)?;
        Ok(CampaignId::from_uuid(row.get("id")))
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
