//! reports: renders each qualifying lead's branded PDF audit (five pages) and its two-page
//! preview, stores both, and records the report with an unguessable token for the links in the
//! email and the storefront. Rendering runs off the async runtime.

pub mod render;

use std::collections::HashMap;

use async_trait::async_trait;
use bytes::Bytes;
use rand::Rng;
use serde_json::json;
use shared::bus::{Envelope, Queue};
use shared::db::{DbError, Tx, cached};
use shared::domain::{BusinessId, Money, TenantId};
use shared::lambda::StartError;
use shared::pipeline::Stage;
use shared::pipeline::messages::LeadRef;
use shared::pipeline::{Deps, EventInfo, Outgoing, StageHandler, StageItem, WorkError};
use shared::store::ObjectKey;

pub use render::{ReportData, render};
pub use shared::domain::Recommendation;

/// The queues this function sends to (the template grants exactly these).
pub const SENDS_TO: &[Queue] = &[Queue::Personalization];
/// The full report's price when none is configured: $49.
pub const DEFAULT_PRICE_CENTS: i64 = 4_900;

pub struct Reports {
    price: Money,
}

impl Reports {
    pub fn new(price: Money) -> Self {
        Self { price }
    }

    /// The report's price: `LF_REPORT_PRICE_CENTS`, or the default.
    pub fn from_source(
        _deps: &Deps,
        source: &dyn shared::config::Source,
    ) -> Result<Self, StartError> {
        let mut r = shared::config::Reader::new(source);
        let cents = r.parsed_or("LF_REPORT_PRICE_CENTS", DEFAULT_PRICE_CENTS);
        r.finish(())?;
        let price = Money::from_cents(cents).map_err(|e| StartError::Invalid {
            variable: "LF_REPORT_PRICE_CENTS",
            reason: e.to_string(),
        })?;
        Ok(Self::new(price))
    }
}

pub struct Rendered {
    pub full_key: String,
    pub preview_key: String,
    pub pages: i16,
    pub bytes: i32,
    pub token: String,
    pub score_id: uuid::Uuid,
}

const LOAD: &str = "
SELECT b.id AS business_id, b.name AS business, concat_ws(', ', b.city, concat_ws(' ', b.state, b.zip)) AS location,
       coalesce(b.website_url, '') AS website, c.sender_name AS agency, c.postal_address AS agency_address,
       s.id AS score_id, s.score, s.tier::text AS tier,
       a.psi_performance, a.psi_seo, a.psi_accessibility, a.psi_best_practices,
       a.lcp_ms, a.cls, a.fcp_ms, a.tbt_ms, a.speed_index_ms,
       coalesce(a.has_viewport, false) AS has_viewport, coalesce(a.https, false) AS https,
       a.title IS NOT NULL AS has_title, a.meta_description IS NOT NULL AS has_meta_description,
       a.h1 IS NOT NULL AS has_h1, cardinality(coalesce(a.analytics, '{}')) > 0 AS has_analytics,
       a.checks->>'jquery_version' AS jquery_version, a.copyright_year::int4 AS copyright_year,
       a.insights
FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[]) AS x(b, c, r)
JOIN businesses b ON b.id = x.b
JOIN campaigns c ON c.id = x.c
JOIN scores s ON s.business_id = b.id AND s.run_id IS NOT DISTINCT FROM x.r
LEFT JOIN assessments a ON a.id = s.assessment_id";

/// What the homepage check found, as the report's findings read it.
#[derive(Debug, Clone, Default, PartialEq)]
struct Found {
    has_viewport: bool,
    https: bool,
    has_title: bool,
    has_meta_description: bool,
    has_h1: bool,
    has_analytics: bool,
    jquery_version: Option<String>,
    copyright_year: Option<i32>,
    performance: Option<u8>,
}

impl Found {
    fn from_row(row: &tokio_postgres::Row) -> Self {
        Self {
            has_viewport: row.get("has_viewport"),
            https: row.get("https"),
            has_title: row.get("has_title"),
            has_meta_description: row.get("has_meta_description"),
            has_h1: row.get("has_h1"),
            has_analytics: row.get("has_analytics"),
            jquery_version: row.get("jquery_version"),
            copyright_year: row.get("copyright_year"),
            performance: percent(row, "psi_performance"),
        }
    }

    /// The findings a report lists, in plain words, from what the check found.
    fn findings(&self, this_year: i32) -> Vec<String> {
        let mut f = Vec::new();
        if !self.has_viewport {
            f.push("No mobile viewport: phones show a shrunken desktop page that visitors must pinch and zoom.".to_owned());
        }
        if !self.https {
            f.push(
                "The site is not served over HTTPS, so browsers mark it \"Not secure\".".to_owned(),
            );
        }
        let missing: Vec<&str> = [
            (self.has_title, "page title"),
            (self.has_meta_description, "meta description"),
            (self.has_h1, "main heading"),
        ]
        .iter()
        .filter(|(present, _)| !present)
        .map(|(_, n)| *n)
        .collect();
        if !missing.is_empty() {
            f.push(format!(
                "Missing {}: search results show little about the business.",
                missing.join(", ")
            ));
        }
        if !self.has_analytics {
            f.push("No analytics: there is no way to know where customers come from.".to_owned());
        }
        if let Some(v) = &self.jquery_version {
            f.push(format!("The site loads jQuery {v}, an outdated library."));
        }
        if let Some(y) = self.copyright_year.filter(|y| this_year - y >= 2) {
            f.push(format!(
                "The footer says © {y}, which makes the business look closed."
            ));
        }
        if let Some(p) = self.performance.filter(|p| *p < 50) {
            f.push(format!(
                "Mobile speed scores {p}/100: most visitors leave before the page finishes loading."
            ));
        }
        if f.is_empty() {
            f.push(
                "The basics are in place; the improvements below are about winning more customers."
                    .to_owned(),
            );
        }
        f
    }
}

/// A 0–100 score column (PageSpeed's categories), clamped.
fn percent(row: &tokio_postgres::Row, column: &str) -> Option<u8> {
    row.get::<_, Option<i16>>(column)
        .map(|v| v.clamp(0, 100) as u8)
}

fn report_data(row: &tokio_postgres::Row) -> ReportData {
    let this_year: i32 = chrono::Utc::now()
        .format("%Y")
        .to_string()
        .parse()
        .unwrap_or(2026);
    let insights: Option<serde_json::Value> = row.get("insights");
    let recommendations = shared::domain::Insights::stored(insights.as_ref()).recommendations;
    ReportData {
        business: row.get("business"),
        location: row.get("location"),
        website: row.get("website"),
        agency: row.get("agency"),
        agency_address: row.get("agency_address"),
        date: chrono::Utc::now().format("%Y-%m-%d").to_string(),
        score: row.get::<_, i16>("score").clamp(0, 100) as u8,
        tier: row.get("tier"),
        performance: percent(row, "psi_performance"),
        seo: percent(row, "psi_seo"),
        accessibility: percent(row, "psi_accessibility"),
        best_practices: percent(row, "psi_best_practices"),
        lcp_ms: row.get("lcp_ms"),
        cls: row.get("cls"),
        fcp_ms: row.get("fcp_ms"),
        tbt_ms: row.get("tbt_ms"),
        speed_index_ms: row.get("speed_index_ms"),
        findings: Found::from_row(row).findings(this_year),
        recommendations,
    }
}

const INSERT_REPORTS: &str = "INSERT INTO reports SELECT * FROM jsonb_populate_recordset(NULL::reports, $1::jsonb)
 ON CONFLICT (tenant_id, business_id, run_id) DO UPDATE SET preview_key = EXCLUDED.preview_key,
    full_key = EXCLUDED.full_key, pages = EXCLUDED.pages, bytes = EXCLUDED.bytes, score_id = EXCLUDED.score_id";

#[async_trait]
impl StageHandler for Reports {
    type Payload = LeadRef;
    type Work = Rendered;
    type Context = HashMap<BusinessId, (ReportData, uuid::Uuid)>;

    const STAGE: Stage = Stage::Reports;
    const INPUT: Queue = Queue::Reports;
    const SENDS_TO: &'static [Queue] = SENDS_TO;

    fn concurrency(&self) -> usize {
        2
    }

    async fn load(
        &self,
        tx: &dyn Tx,
        _: TenantId,
        envs: &[&Envelope<LeadRef>],
    ) -> Result<Self::Context, DbError> {
        let shared::pipeline::messages::LeadColumns {
            businesses: b,
            campaigns: c,
            runs: r,
        } = shared::pipeline::messages::LeadColumns::of(envs);
        Ok(cached::query(tx, LOAD, &[&b, &c, &r])
            .await?
            .iter()
            .map(|row| {
                (
                    BusinessId::from_uuid(row.get("business_id")),
                    (report_data(row), row.get("score_id")),
                )
            })
            .collect())
    }

    async fn work(
        &self,
        deps: &Deps,
        ctx: &Self::Context,
        env: &Envelope<LeadRef>,
        _paid: bool,
    ) -> Result<Rendered, WorkError> {
        let (data, score_id) = ctx.get(&env.payload.business_id).cloned().ok_or_else(|| {
            WorkError::Permanent(format!(
                "no score for business {} in this run",
                env.payload.business_id
            ))
        })?;
        let (full, preview) = tokio::task::spawn_blocking(move || {
            Ok::<_, render::RenderError>((render(&data, false)?, render(&data, true)?))
        })
        .await
        .map_err(|e| WorkError::Transient(format!("render task: {e}")))?
        .map_err(|e| WorkError::Permanent(format!("render: {e}")))?;
        let run = env
            .run_id
            .map(|r| r.to_string())
            .unwrap_or_else(|| "adhoc".into());
        let base = format!(
            "reports/{}/{}/{run}",
            env.tenant_id, env.payload.business_id
        );
        let full_key = ObjectKey::parse(&format!("{base}/full.pdf"))
            .map_err(|e| WorkError::Permanent(e.to_string()))?;
        let preview_key = ObjectKey::parse(&format!("{base}/preview.pdf"))
            .map_err(|e| WorkError::Permanent(e.to_string()))?;
        let bytes = full.len() as i32;
        deps.store
            .put(&full_key, Bytes::from(full), "application/pdf")
            .await
            .map_err(|e| WorkError::Transient(e.to_string()))?;
        deps.store
            .put(&preview_key, Bytes::from(preview), "application/pdf")
            .await
            .map_err(|e| WorkError::Transient(e.to_string()))?;
        // 40 random alphanumerics (≈ 238 bits): links cannot be guessed. A redelivery keeps the
        // token stored first (see persist).
        let token: String = rand::rng()
            .sample_iter(rand::distr::Alphanumeric)
            .take(40)
            .map(char::from)
            .collect();
        Ok(Rendered {
            full_key: full_key.to_string(),
            preview_key: preview_key.to_string(),
            pages: 5,
            bytes,
            token,
            score_id,
        })
    }

    async fn persist(
        &self,
        _deps: &Deps,
        tx: &dyn Tx,
        tenant: TenantId,
        items: &[StageItem<LeadRef, Rendered>],
    ) -> Result<Vec<Vec<Outgoing>>, shared::pipeline::StageError> {
        let now = chrono::Utc::now();
        let rows: Vec<serde_json::Value> = items
            .iter()
            .map(|it| {
                let r = &it.work;
                json!({
                    "id": uuid::Uuid::new_v4(), "tenant_id": tenant.as_uuid(), "business_id": it.env.payload.business_id.as_uuid(),
                    "run_id": it.env.run_id.map(|r| r.as_uuid()), "score_id": r.score_id, "token": r.token,
                    "preview_key": r.preview_key, "full_key": r.full_key, "pages": r.pages, "bytes": r.bytes,
                    "price_cents": self.price.cents(), "created_at": now
                })
            })
            .collect();
        cached::execute(tx, INSERT_REPORTS, &[&serde_json::Value::Array(rows)]).await?;
        items
            .iter()
            .map(|it| Ok(vec![Outgoing::forward(&it.env, Queue::Personalization)?]))
            .collect()
    }

    fn describe(&self, item: &StageItem<LeadRef, Rendered>, _next: &[Outgoing]) -> Vec<EventInfo> {
        vec![EventInfo {
            entity_id: Some(item.env.payload.business_id.to_string()),
            event: "rendered".into(),
            status: "ok",
            extra: json!({ "bytes": item.work.bytes, "pages": item.work.pages }),
            marker: false,
        }]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn findings_name_what_the_check_found_missing_and_praise_a_sound_site() {
        let weak = Found {
            jquery_version: Some("1.8.3".into()),
            copyright_year: Some(2019),
            performance: Some(31),
            ..Found::default()
        };
        let f = weak.findings(2026);
        assert_eq!(f.len(), 7, "{f:#?}");
        assert!(f[2].starts_with("Missing page title, meta description, main heading"));
        assert!(f[4].contains("jQuery 1.8.3"));
        assert!(f[5].contains("© 2019"));
        assert!(f[6].contains("31/100"));
        let sound = Found {
            has_viewport: true,
            https: true,
            has_title: true,
            has_meta_description: true,
            has_h1: true,
            has_analytics: true,
            copyright_year: Some(2025),
            performance: Some(50),
            ..Found::default()
        };
        assert_eq!(sound.findings(2026).len(), 1);
        assert!(sound.findings(2026)[0].starts_with("The basics are in place"));
    }
}
