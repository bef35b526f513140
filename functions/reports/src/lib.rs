//! reports: renders each qualifying lead's branded PDF audit (five pages) and its two-page
//! preview, stores both, and records the report with an unguessable token for the links in the
//! email and the storefront. Rendering runs off the async runtime.

pub mod render;

use std::collections::HashMap;

use async_trait::async_trait;
use bytes::Bytes;
use rand::Rng;
use serde_json::json;
use shared::bus::{Envelope, queues};
use shared::db::{DbError, Tx, cached};
use shared::domain::{BusinessId, Money, TenantId};
use shared::pipeline::messages::LeadRef;
use shared::pipeline::{Deps, EventInfo, Outgoing, StageHandler, StageItem, WorkError};
use shared::store::ObjectKey;

pub use render::{ReportData, render};
pub use shared::domain::Recommendation;

/// The queues this function sends to (the template grants exactly these).
pub const SENDS_TO: &[&str] = &[queues::PERSONALIZATION];
/// The full report's price when none is configured: $49.
pub const DEFAULT_PRICE_CENTS: i64 = 4_900;
pub const STAGE: &str = "reports";

pub struct Reports {
    price: Money,
}

impl Reports {
    pub fn new(price: Money) -> Self {
        Self { price }
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
SELECT b.id, b.name, concat_ws(', ', b.city, concat_ws(' ', b.state, b.zip)), coalesce(b.website_url, ''),
       c.sender_name, c.postal_address, s.id, s.score, s.tier::text,
       a.psi_performance, a.psi_seo, a.psi_accessibility, a.psi_best_practices,
       a.lcp_ms, a.cls, a.fcp_ms, a.tbt_ms, a.speed_index_ms,
       coalesce(a.has_viewport, false), coalesce(a.https, false), a.title IS NOT NULL, a.meta_description IS NOT NULL,
       a.h1 IS NOT NULL, cardinality(coalesce(a.analytics, '{}')) > 0, a.checks->>'jquery_version', a.copyright_year::int4,
       a.insights
FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[]) AS x(b, c, r)
JOIN businesses b ON b.id = x.b
JOIN campaigns c ON c.id = x.c
JOIN scores s ON s.business_id = b.id AND s.run_id IS NOT DISTINCT FROM x.r
LEFT JOIN assessments a ON a.id = s.assessment_id";

fn findings(row: &tokio_postgres::Row, this_year: i32) -> Vec<String> {
    let mut f = Vec::new();
    if !row.get::<_, bool>(18) {
        f.push("No mobile viewport: phones show a shrunken desktop page that visitors must pinch and zoom.".to_owned());
    }
    if !row.get::<_, bool>(19) {
        f.push("The site is not served over HTTPS, so browsers mark it \"Not secure\".".to_owned());
    }
    let missing: Vec<&str> = [
        (20, "page title"),
        (21, "meta description"),
        (22, "main heading"),
    ]
    .iter()
    .filter(|(i, _)| !row.get::<_, bool>(*i))
    .map(|(_, n)| *n)
    .collect();
    if !missing.is_empty() {
        f.push(format!(
            "Missing {}: search results show little about the business.",
            missing.join(", ")
        ));
    }
    if !row.get::<_, bool>(23) {
        f.push("No analytics: there is no way to know where customers come from.".to_owned());
    }
    if let Some(v) = row.get::<_, Option<String>>(24) {
        f.push(format!("The site loads jQuery {v}, an outdated library."));
    }
    if let Some(y) = row.get::<_, Option<i32>>(25).filter(|y| this_year - y >= 2) {
        f.push(format!(
            "The footer says © {y}, which makes the business look closed."
        ));
    }
    if let Some(p) = row.get::<_, Option<i16>>(9).filter(|p| *p < 50) {
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

fn report_data(row: &tokio_postgres::Row) -> ReportData {
    let this_year: i32 = chrono::Utc::now()
        .format("%Y")
        .to_string()
        .parse()
        .unwrap_or(2026);
    let pct = |i: usize| row.get::<_, Option<i16>>(i).map(|v| v.clamp(0, 100) as u8);
    let insights: Option<serde_json::Value> = row.get(26);
    let recommendations = shared::domain::Insights::stored(insights.as_ref()).recommendations;
    ReportData {
        business: row.get(1),
        location: row.get(2),
        website: row.get(3),
        agency: row.get(4),
        agency_address: row.get(5),
        date: chrono::Utc::now().format("%Y-%m-%d").to_string(),
        score: row.get::<_, i16>(7).clamp(0, 100) as u8,
        tier: row.get(8),
        performance: pct(9),
        seo: pct(10),
        accessibility: pct(11),
        best_practices: pct(12),
        lcp_ms: row.get(13),
        cls: row.get(14),
        fcp_ms: row.get(15),
        tbt_ms: row.get(16),
        speed_index_ms: row.get(17),
        findings: findings(row, this_year),
        recommendations,
    }
}

#[async_trait]
impl StageHandler for Reports {
    type Payload = LeadRef;
    type Work = Rendered;
    type Context = HashMap<BusinessId, (ReportData, uuid::Uuid)>;

    fn stage(&self) -> &'static str {
        STAGE
    }

    fn input_queue(&self) -> &'static str {
        shared::bus::queues::REPORTS
    }

    fn sends_to(&self) -> &'static [&'static str] {
        SENDS_TO
    }

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
                    BusinessId::from_uuid(row.get(0)),
                    (report_data(row), row.get(6)),
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
        cached::execute(
            tx,
            "INSERT INTO reports SELECT * FROM jsonb_populate_recordset(NULL::reports, $1::jsonb)
             ON CONFLICT (tenant_id, business_id, run_id) DO UPDATE SET preview_key = EXCLUDED.preview_key,
                full_key = EXCLUDED.full_key, pages = EXCLUDED.pages, bytes = EXCLUDED.bytes, score_id = EXCLUDED.score_id",
            &[&serde_json::Value::Array(rows)],
        )
        .await?;
        items
            .iter()
            .map(|it| Ok(vec![Outgoing::forward(&it.env, queues::PERSONALIZATION)?]))
            .collect()
    }

    fn describe(&self, item: &StageItem<LeadRef, Rendered>) -> Vec<EventInfo> {
        vec![EventInfo {
            entity_id: Some(item.env.payload.business_id.to_string()),
            event: "rendered".into(),
            status: "ok",
            extra: json!({ "bytes": item.work.bytes, "pages": item.work.pages }),
            marker: false,
        }]
    }
}
