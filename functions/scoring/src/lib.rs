//! scoring: a versioned rule file turns each assessed business into a 0–100 score and an A–D
//! tier, with the breakdown stored; only qualifying leads (targeted tier, reachable, site
//! answered, open, not suppressed) go on to reports.

pub mod engine;
pub mod rules;

use std::collections::HashMap;

use async_trait::async_trait;
use serde_json::json;
use shared::bus::{Envelope, Queue};
use shared::db::{DbError, Tx, cached};
use shared::domain::{BusinessId, TenantId, Tier};
use shared::lambda::StartError;
use shared::pipeline::Stage;
use shared::pipeline::messages::LeadRef;
use shared::pipeline::{Deps, EventInfo, Outgoing, StageHandler, StageItem, WorkError};

/// The queues this function sends to (the template grants exactly these).
pub const SENDS_TO: &[Queue] = &[Queue::Reports];

pub use engine::{Facts, Outcome, score};
pub use rules::{Rules, RulesError};

pub struct Scoring {
    rules: Rules,
}

impl Scoring {
    pub fn new(rules: Rules) -> Self {
        Self { rules }
    }

    /// The shipped rules, or the file named by `LF_SCORING_RULES`.
    pub fn from_source(
        _deps: &Deps,
        source: &dyn shared::config::Source,
    ) -> Result<Self, StartError> {
        let rules = shared::lambda::file_or_embedded(
            source,
            "LF_SCORING_RULES",
            rules::DEFAULT_RULES,
            Rules::parse,
        )?;
        Ok(Self::new(rules))
    }
}

/// Facts per business, plus the assessment they came from and the campaign's targeted tiers.
pub struct Lead {
    pub facts: Facts,
    pub assessment_id: Option<uuid::Uuid>,
    pub tiers: Vec<Tier>,
}

pub struct Scored {
    pub outcome: Outcome,
    pub assessment_id: Option<uuid::Uuid>,
}

const LOAD: &str = "
SELECT b.id AS business_id, c.vertical, c.qualify_tiers, b.rating::float8 AS yelp_rating, b.review_count AS yelp_reviews, b.email,
       b.is_closed OR coalesce(e.business_status = 'CLOSED_PERMANENTLY', false) AS closed,
       EXISTS (SELECT 1 FROM suppressions s WHERE (s.kind = 'email' AND s.value = lower(b.email))
                                             OR (s.kind = 'domain' AND (s.value = b.website_domain OR s.value = split_part(lower(b.email), '@', 2)))) AS suppressed,
       a.id AS assessment_id, coalesce(a.http_status BETWEEN 200 AND 299, false) AS http_ok, coalesce(a.https, false) AS https,
       coalesce(a.has_viewport, false) AS has_viewport, a.title IS NOT NULL AS has_title,
       a.meta_description IS NOT NULL AS has_meta_description, a.h1 IS NOT NULL AS has_h1,
       cardinality(coalesce(a.analytics, '{}')) > 0 AS analytics, a.checks->>'jquery_version' AS jquery_version,
       a.copyright_year::int4 AS copyright_year, a.cms, coalesce((a.checks->>'uses_tables_for_layout')::bool, false) AS tables_for_layout,
       a.psi_performance, a.psi_seo, a.lcp_ms, a.cls, e.rating::float8 AS google_rating, e.user_rating_count AS google_reviews
FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[]) AS x(business_id, campaign_id, run_id)
JOIN businesses b ON b.id = x.business_id
JOIN campaigns c ON c.id = x.campaign_id
LEFT JOIN enrichments e ON e.business_id = b.id
LEFT JOIN LATERAL (SELECT * FROM assessments a WHERE a.business_id = b.id AND a.run_id IS NOT DISTINCT FROM x.run_id
                   ORDER BY a.assessed_at DESC LIMIT 1) a ON true";

const INSERT_SCORES: &str = "INSERT INTO scores SELECT * FROM jsonb_populate_recordset(NULL::scores, $1::jsonb)
 ON CONFLICT (tenant_id, business_id, run_id) DO UPDATE SET score = EXCLUDED.score, tier = EXCLUDED.tier,
    rules_version = EXCLUDED.rules_version, breakdown = EXCLUDED.breakdown, qualified = EXCLUDED.qualified,
    disqualify_reason = EXCLUDED.disqualify_reason, assessment_id = EXCLUDED.assessment_id, scored_at = EXCLUDED.scored_at
 RETURNING business_id, id";

#[async_trait]
impl StageHandler for Scoring {
    type Payload = LeadRef;
    type Work = Scored;
    type Context = HashMap<BusinessId, Lead>;

    const STAGE: Stage = Stage::Scoring;
    const INPUT: Queue = Queue::Scoring;
    const SENDS_TO: &'static [Queue] = SENDS_TO;

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
        let this_year: i32 = chrono::Utc::now()
            .format("%Y")
            .to_string()
            .parse()
            .unwrap_or(2026);
        let rows = cached::query(tx, LOAD, &[&b, &c, &r]).await?;
        Ok(rows
            .iter()
            .map(|row| {
                let tiers: Vec<String> = row.get("qualify_tiers");
                let yelp_rating: Option<f64> = row.get("yelp_rating");
                let google_rating: Option<f64> = row.get("google_rating");
                let yelp_reviews: Option<i32> = row.get("yelp_reviews");
                let google_reviews: Option<i32> = row.get("google_reviews");
                let percent = |column: &str| {
                    row.get::<_, Option<i16>>(column)
                        .map(|p| p.clamp(0, 100) as u8)
                };
                let facts = Facts {
                    vertical: row.get("vertical"),
                    rating: google_rating.or(yelp_rating),
                    review_count: google_reviews.or(yelp_reviews).map(|n| n.max(0) as u32),
                    email: row.get("email"),
                    closed: row.get("closed"),
                    suppressed: row.get("suppressed"),
                    http_ok: row.get("http_ok"),
                    https: row.get("https"),
                    has_viewport: row.get("has_viewport"),
                    has_title: row.get("has_title"),
                    has_meta_description: row.get("has_meta_description"),
                    has_h1: row.get("has_h1"),
                    analytics: row.get("analytics"),
                    jquery_version: row.get("jquery_version"),
                    copyright_year: row.get("copyright_year"),
                    cms: row.get("cms"),
                    tables_for_layout: row.get("tables_for_layout"),
                    performance: percent("psi_performance"),
                    seo: percent("psi_seo"),
                    lcp_ms: row.get("lcp_ms"),
                    cls: row.get("cls"),
                    this_year,
                };
                (
                    BusinessId::from_uuid(row.get("business_id")),
                    Lead {
                        facts,
                        assessment_id: row.get("assessment_id"),
                        tiers: tiers.iter().filter_map(|t| Tier::parse(t).ok()).collect(),
                    },
                )
            })
            .collect())
    }

    async fn work(
        &self,
        _deps: &Deps,
        ctx: &Self::Context,
        env: &Envelope<LeadRef>,
        _paid: bool,
    ) -> Result<Scored, WorkError> {
        let lead = ctx.get(&env.payload.business_id).ok_or_else(|| {
            WorkError::Permanent(format!(
                "business {} or campaign {} not found",
                env.payload.business_id, env.payload.campaign_id
            ))
        })?;
        if lead.assessment_id.is_none() {
            return Err(WorkError::Permanent(format!(
                "business {} has no assessment for this run",
                env.payload.business_id
            )));
        }
        Ok(Scored {
            outcome: score(&self.rules, &lead.facts, &lead.tiers),
            assessment_id: lead.assessment_id,
        })
    }

    async fn persist(
        &self,
        _deps: &Deps,
        tx: &dyn Tx,
        tenant: TenantId,
        items: &[StageItem<LeadRef, Scored>],
    ) -> Result<Vec<Vec<Outgoing>>, shared::pipeline::StageError> {
        let now = chrono::Utc::now();
        let rows: Vec<serde_json::Value> = items
            .iter()
            .map(|it| {
                let o = &it.work.outcome;
                json!({
                    "id": uuid::Uuid::new_v4(), "tenant_id": tenant.as_uuid(), "business_id": it.env.payload.business_id.as_uuid(),
                    "run_id": it.env.run_id.map(|r| r.as_uuid()), "assessment_id": it.work.assessment_id,
                    "score": o.score.value(), "tier": o.tier.as_str(), "rules_version": self.rules.version,
                    "breakdown": o.breakdown, "qualified": o.qualified, "disqualify_reason": o.disqualify_reason, "scored_at": now
                })
            })
            .collect();
        let ids: std::collections::HashMap<uuid::Uuid, uuid::Uuid> =
            cached::query(tx, INSERT_SCORES, &[&serde_json::Value::Array(rows)])
                .await?
                .iter()
                .map(|r| (r.get("business_id"), r.get("id")))
                .collect();
        items
            .iter()
            .map(|it| {
                if !it.work.outcome.qualified
                    || !ids.contains_key(&it.env.payload.business_id.as_uuid())
                {
                    return Ok(Vec::new());
                }
                Ok(vec![Outgoing::forward(&it.env, Queue::Reports)?])
            })
            .collect()
    }

    fn describe(&self, item: &StageItem<LeadRef, Scored>, _next: &[Outgoing]) -> Vec<EventInfo> {
        let o = &item.work.outcome;
        vec![EventInfo {
            entity_id: Some(item.env.payload.business_id.to_string()),
            event: if o.qualified {
                "qualified".into()
            } else {
                format!(
                    "disqualified:{}",
                    o.disqualify_reason.as_deref().unwrap_or("unknown")
                )
            },
            status: "ok",
            extra: json!({ "score": o.score.value(), "tier": o.tier.as_str() }),
            marker: false,
        }]
    }
}
