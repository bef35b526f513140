//! The numbers an agency looks at, for the analytics function, the ops API and the CLI.
//!
//! `rollup` recomputes `funnel_daily` — per campaign and day: sourced, assessed, scored,
//! emailed, delivered, opened, clicked, bounced, spam reports, purchased, revenue net of refunds,
//! attributed vendor cost — for a range of days, from the source tables, in one statement per
//! tenant. It is idempotent: re-running a period gives the same rows (each day's row is replaced
//! by a full recount, never incremented). The rest is computed on read, for the ops API and the
//! dashboard: experiment results per variant with Wilson intervals and a z-test against the
//! control, cost per lead by tier, and the funnel over a period.

pub mod stats;

use crate::db::{DbError, Pool, begin_tenant};
use serde::Serialize;

/// Days recomputed by the hourly schedule (events arrive for a few days after a send).
pub const DEFAULT_DAYS: i64 = 3;

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct RollupReport {
    pub tenants: usize,
    pub rows: u64,
}

/// Each count reads its day by a time range along an index: the column compared with
/// `timestamptz` bounds, never cast (no index serves a cast column) nor compared with a `date`
/// (that cross-type comparison is not leakproof, so under row-level security no index serves it). Deliveries, opens and clicks are counted from the day's events: an email
/// counts on the day of its first such event (the webhook stores that time on the email), so
/// the roll-up reads a day's events, not every email the tenant ever sent, and looks each
/// event's email up by its key (a lateral lookup, so the planner cannot trade the day's few
/// thousand lookups for a hash of every email).
const ROLLUP: &str = "
WITH days AS (SELECT d::date AS day FROM generate_series($1::date, $2::date, interval '1 day') d),
c AS (SELECT id FROM campaigns),
grid AS (SELECT c.id AS campaign_id, days.day FROM c CROSS JOIN days),
sourced AS (SELECT campaign_id, created_at::date AS day, count(*) n FROM businesses
            WHERE created_at >= $1::date::timestamptz AND created_at < ($2::date + 1)::timestamptz AND campaign_id IS NOT NULL GROUP BY 1, 2),
assessed AS (SELECT b.campaign_id, a.assessed_at::date AS day, count(*) n FROM assessments a JOIN businesses b ON b.id = a.business_id
             WHERE a.assessed_at >= $1::date::timestamptz AND a.assessed_at < ($2::date + 1)::timestamptz GROUP BY 1, 2),
scored AS (SELECT b.campaign_id, s.scored_at::date AS day, count(*) n FROM scores s JOIN businesses b ON b.id = s.business_id
           WHERE s.scored_at >= $1::date::timestamptz AND s.scored_at < ($2::date + 1)::timestamptz GROUP BY 1, 2),
sent AS (SELECT e.campaign_id, e.sent_at::date AS day, count(*) n FROM c JOIN emails e ON e.tenant_id = $3 AND e.campaign_id = c.id
         WHERE e.kind = 'outreach' AND e.sent_at >= $1::date::timestamptz AND e.sent_at < ($2::date + 1)::timestamptz GROUP BY 1, 2),
ev AS (SELECT m.campaign_id, v.day,
              count(*) FILTER (WHERE v.delivered AND m.delivered_at::date = v.day) d,
              count(*) FILTER (WHERE v.opened AND m.opened_at::date = v.day) o,
              count(*) FILTER (WHERE v.clicked AND m.clicked_at::date = v.day) k,
              count(*) FILTER (WHERE v.bounced) b,
              count(*) FILTER (WHERE v.spam) s
       FROM (SELECT email_id, occurred_at::date AS day,
                    bool_or(event IN ('delivered', 'open', 'click')) delivered, bool_or(event = 'open') opened,
                    bool_or(event = 'click') clicked, bool_or(event = 'bounce') bounced, bool_or(event = 'spamreport') spam
             FROM email_events
             WHERE tenant_id = $3 AND email_id IS NOT NULL
               AND occurred_at >= $1::date::timestamptz AND occurred_at < ($2::date + 1)::timestamptz
             GROUP BY 1, 2) v
       CROSS JOIN LATERAL (SELECT e.campaign_id, e.delivered_at, e.opened_at, e.clicked_at FROM emails e
                           WHERE e.id = v.email_id AND e.kind = 'outreach') m
       GROUP BY 1, 2),
paid AS (SELECT p.campaign_id, p.paid_at::date AS day, count(*) n, sum(p.amount_cents - p.refunded_cents) r FROM purchases p
         WHERE p.tenant_id = $3 AND p.paid_at >= $1::date::timestamptz AND p.paid_at < ($2::date + 1)::timestamptz
           AND p.status IN ('paid', 'partially_refunded', 'refunded') AND p.campaign_id IS NOT NULL GROUP BY 1, 2),
cost AS (SELECT b.campaign_id, l.occurred_at::date AS day, sum(l.cost_micros) m FROM cost_ledger l JOIN businesses b ON b.id = l.business_id
         WHERE l.tenant_id = $3 AND l.occurred_at >= $1::date::timestamptz AND l.occurred_at < ($2::date + 1)::timestamptz GROUP BY 1, 2)
INSERT INTO funnel_daily (tenant_id, campaign_id, day, sourced, assessed, scored, emailed, delivered, opened, clicked, bounced,
                          spam_reports, purchased, revenue_cents, cost_micros, computed_at)
SELECT $3, g.campaign_id, g.day, coalesce(sourced.n, 0), coalesce(assessed.n, 0), coalesce(scored.n, 0), coalesce(sent.n, 0),
       coalesce(ev.d, 0), coalesce(ev.o, 0), coalesce(ev.k, 0), coalesce(ev.b, 0), coalesce(ev.s, 0), coalesce(paid.n, 0),
       coalesce(paid.r, 0), coalesce(cost.m, 0), now()
FROM grid g
LEFT JOIN sourced USING (campaign_id, day) LEFT JOIN assessed USING (campaign_id, day) LEFT JOIN scored USING (campaign_id, day)
LEFT JOIN sent USING (campaign_id, day) LEFT JOIN ev USING (campaign_id, day) LEFT JOIN paid USING (campaign_id, day)
LEFT JOIN cost USING (campaign_id, day)
ON CONFLICT (tenant_id, campaign_id, day) DO UPDATE SET
    sourced = EXCLUDED.sourced, assessed = EXCLUDED.assessed, scored = EXCLUDED.scored, emailed = EXCLUDED.emailed,
    delivered = EXCLUDED.delivered, opened = EXCLUDED.opened, clicked = EXCLUDED.clicked, bounced = EXCLUDED.bounced,
    spam_reports = EXCLUDED.spam_reports, purchased = EXCLUDED.purchased, revenue_cents = EXCLUDED.revenue_cents,
    cost_micros = EXCLUDED.cost_micros, computed_at = EXCLUDED.computed_at";

/// Recomputes `funnel_daily` for `from..=to` for every tenant.
pub async fn rollup(
    pool: &Pool,
    from: chrono::NaiveDate,
    to: chrono::NaiveDate,
) -> Result<RollupReport, DbError> {
    let tenants = crate::db::tenant_ids(&pool.get().await?).await?;
    let mut report = RollupReport {
        tenants: tenants.len(),
        rows: 0,
    };
    for tenant in tenants {
        let mut c = pool.get().await?;
        let tx = begin_tenant(&mut c, tenant).await?;
        report.rows += rollup_tenant(&tx, tenant, from, to).await?;
        tx.commit().await?;
    }
    Ok(report)
}

/// The tenant's compute per day beside what its vendors cost (the whole ledger: searches too,
/// which no campaign's funnel carries) and the leads found (the day's `funnel_daily` rows,
/// written first): infra cost per 1,000 leads next to vendor cost.
const INFRA_ROLLUP: &str = "
WITH days AS (SELECT d::date AS day FROM generate_series($1::date, $2::date, interval '1 day') d),
compute AS (SELECT occurred_at::date AS day, sum(invocations) n, sum(billed_ms * memory_mb) mb_ms, sum(cost_nanos) nanos
            FROM compute_usage WHERE tenant_id = $3 AND occurred_at >= $1::date::timestamptz AND occurred_at < ($2::date + 1)::timestamptz
            GROUP BY 1),
vendor AS (SELECT occurred_at::date AS day, sum(cost_micros) micros FROM cost_ledger
           WHERE tenant_id = $3 AND occurred_at >= $1::date::timestamptz AND occurred_at < ($2::date + 1)::timestamptz
           GROUP BY 1),
funnel AS (SELECT day, sum(sourced) sourced FROM funnel_daily
           WHERE tenant_id = $3 AND day >= $1::date AND day <= $2::date GROUP BY 1)
INSERT INTO infra_daily (tenant_id, day, invocations, gb_seconds, infra_nanos, vendor_micros, sourced, computed_at)
SELECT $3, days.day, coalesce(compute.n, 0), coalesce(compute.mb_ms, 0)::float8 / 1024000.0, coalesce(compute.nanos, 0),
       coalesce(vendor.micros, 0), coalesce(funnel.sourced, 0), now()
FROM days LEFT JOIN compute USING (day) LEFT JOIN vendor USING (day) LEFT JOIN funnel USING (day)
ON CONFLICT (tenant_id, day) DO UPDATE SET invocations = EXCLUDED.invocations, gb_seconds = EXCLUDED.gb_seconds,
    infra_nanos = EXCLUDED.infra_nanos, vendor_micros = EXCLUDED.vendor_micros, sourced = EXCLUDED.sourced,
    computed_at = EXCLUDED.computed_at";

/// Recomputes `funnel_daily`, then `infra_daily`, for `from..=to` for `tenant`, in `tx` (under
/// its RLS); returns the funnel rows written.
pub async fn rollup_tenant(
    tx: &dyn crate::db::Tx,
    tenant: crate::domain::TenantId,
    from: chrono::NaiveDate,
    to: chrono::NaiveDate,
) -> Result<u64, DbError> {
    let params: crate::db::cached::Params<'_> = &[&from, &to, &tenant.as_uuid()];
    let rows = crate::db::cached::execute(tx, ROLLUP, params).await?;
    crate::db::cached::execute(tx, INFRA_ROLLUP, params).await?;
    Ok(rows)
}

/// One day of a tenant's costs: infra (compute) beside vendors, and per 1,000 leads.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DailyCost {
    pub day: chrono::NaiveDate,
    pub sourced: i64,
    pub invocations: i64,
    pub gb_seconds: f64,
    pub infra_micros: i64,
    pub vendor_micros: i64,
    /// `None` on a day that found no lead.
    pub infra_per_1000_leads_micros: Option<i64>,
    pub vendor_per_1000_leads_micros: Option<i64>,
}

const DAILY_COSTS: &str =
    "SELECT day, sourced, invocations, gb_seconds, infra_nanos, vendor_micros FROM infra_daily
 WHERE day >= $1 AND day <= $2 ORDER BY day";

/// The tenant's rolled-up costs per day, `from..=to` (`tx` under its RLS).
pub async fn daily_costs(
    tx: &dyn crate::db::Tx,
    from: chrono::NaiveDate,
    to: chrono::NaiveDate,
) -> Result<Vec<DailyCost>, DbError> {
    Ok(crate::db::cached::query(tx, DAILY_COSTS, &[&from, &to])
        .await?
        .iter()
        .map(|r| {
            let sourced: i64 = r.get("sourced");
            let infra_micros = r.get::<_, i64>("infra_nanos") / 1_000;
            let vendor_micros: i64 = r.get("vendor_micros");
            let per_1000 = |m: i64| (sourced > 0).then(|| m * 1_000 / sourced);
            DailyCost {
                day: r.get("day"),
                sourced,
                invocations: r.get("invocations"),
                gb_seconds: r.get("gb_seconds"),
                infra_micros,
                vendor_micros,
                infra_per_1000_leads_micros: per_1000(infra_micros),
                vendor_per_1000_leads_micros: per_1000(vendor_micros),
            }
        })
        .collect())
}

/// One campaign's funnel over a period, summed from `funnel_daily`.
#[derive(Debug, Default, Clone, PartialEq, Serialize)]
pub struct Funnel {
    pub campaign_id: uuid::Uuid,
    pub sourced: i64,
    pub assessed: i64,
    pub scored: i64,
    pub emailed: i64,
    pub delivered: i64,
    pub opened: i64,
    pub clicked: i64,
    pub bounced: i64,
    pub spam_reports: i64,
    pub purchased: i64,
    pub revenue_cents: i64,
    pub cost_micros: i64,
    pub conversion: f64,
    pub bounce_rate: f64,
    pub spam_rate: f64,
    pub cost_per_lead_micros: Option<i64>,
}

const FUNNELS: &str = "SELECT campaign_id, sum(sourced)::int8 AS sourced, sum(assessed)::int8 AS assessed, sum(scored)::int8 AS scored,
        sum(emailed)::int8 AS emailed, sum(delivered)::int8 AS delivered, sum(opened)::int8 AS opened,
        sum(clicked)::int8 AS clicked, sum(bounced)::int8 AS bounced, sum(spam_reports)::int8 AS spam_reports,
        sum(purchased)::int8 AS purchased, sum(revenue_cents)::int8 AS revenue_cents, sum(cost_micros)::int8 AS cost_micros
 FROM funnel_daily WHERE day BETWEEN $1 AND $2 AND ($3::uuid IS NULL OR campaign_id = $3)
 GROUP BY campaign_id ORDER BY campaign_id";

/// The funnel of each campaign (or one) over `from..=to`, from the roll-up.
pub async fn funnels(
    tx: &tokio_postgres::Transaction<'_>,
    campaign: Option<uuid::Uuid>,
    from: chrono::NaiveDate,
    to: chrono::NaiveDate,
) -> Result<Vec<Funnel>, DbError> {
    let rows = tx.query(FUNNELS, &[&from, &to, &campaign]).await?;
    Ok(rows
        .iter()
        .map(|r| {
            let g = |c: &str| r.get::<_, i64>(c);
            let ratio = |a: i64, b: i64| if b > 0 { a as f64 / b as f64 } else { 0.0 };
            Funnel {
                campaign_id: r.get("campaign_id"),
                sourced: g("sourced"),
                assessed: g("assessed"),
                scored: g("scored"),
                emailed: g("emailed"),
                delivered: g("delivered"),
                opened: g("opened"),
                clicked: g("clicked"),
                bounced: g("bounced"),
                spam_reports: g("spam_reports"),
                purchased: g("purchased"),
                revenue_cents: g("revenue_cents"),
                cost_micros: g("cost_micros"),
                conversion: ratio(g("purchased"), g("emailed")),
                bounce_rate: ratio(g("bounced"), g("emailed")),
                spam_rate: ratio(g("spam_reports"), g("delivered")),
                cost_per_lead_micros: (g("sourced") > 0).then(|| g("cost_micros") / g("sourced")),
            }
        })
        .collect())
}

/// One variant's results.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VariantResult {
    pub experiment: String,
    pub variant: String,
    pub sends: i64,
    pub opens: i64,
    pub clicks: i64,
    pub purchases: i64,
    pub conversion: f64,
    /// Wilson interval of the conversion at the experiment's confidence.
    pub ci_low: f64,
    pub ci_high: f64,
    /// Two-sided p-value against the control (the first variant); `None` for the control.
    pub p_value: Option<f64>,
    /// Every variant has the minimum sample and this one differs from the control at the
    /// experiment's confidence, for the better.
    pub winner: bool,
    pub min_sample_reached: bool,
}

const EXPERIMENT_RESULTS: &str = "SELECT x.key AS experiment, x.min_sample, x.confidence, v.key AS variant,
        count(e.id) FILTER (WHERE e.send_state = 'sent') AS sends,
        count(e.opened_at) AS opens, count(e.clicked_at) AS clicks,
        count(DISTINCT p.id) FILTER (WHERE p.status IN ('paid', 'partially_refunded', 'refunded')) AS purchases
 FROM experiments x JOIN experiment_variants v ON v.experiment_id = x.id
 LEFT JOIN emails e ON e.variant_id = v.id AND e.kind = 'outreach'
 LEFT JOIN purchases p ON p.email_id = e.id
 GROUP BY x.key, x.min_sample, x.confidence, v.key, v.id
 ORDER BY x.key, min(v.key)";

/// Every experiment's variants (sent outreach only), control first.
pub async fn experiment_results(
    tx: &tokio_postgres::Transaction<'_>,
) -> Result<Vec<VariantResult>, DbError> {
    let rows = tx.query(EXPERIMENT_RESULTS, &[]).await?;
    let mut out: Vec<VariantResult> = Vec::new();
    let mut i = 0;
    while i < rows.len() {
        let exp: String = rows[i].get("experiment");
        let group: Vec<&tokio_postgres::Row> = rows[i..]
            .iter()
            .take_while(|r| r.get::<_, String>("experiment") == exp)
            .collect();
        i += group.len();
        let min_sample = i64::from(group[0].get::<_, i32>("min_sample"));
        let confidence: f64 = group[0].get("confidence");
        let all_sampled = group.iter().all(|r| r.get::<_, i64>("sends") >= min_sample);
        let (control_s, control_n) = (
            group[0].get::<_, i64>("purchases"),
            group[0].get::<_, i64>("sends"),
        );
        for (j, r) in group.iter().enumerate() {
            let (n, s) = (r.get::<_, i64>("sends"), r.get::<_, i64>("purchases"));
            let (lo, hi) = stats::wilson(s, n, confidence);
            let p = (j > 0).then(|| stats::two_proportion_p(s, n, control_s, control_n));
            let conv = if n > 0 { s as f64 / n as f64 } else { 0.0 };
            let control_conv = if control_n > 0 {
                control_s as f64 / control_n as f64
            } else {
                0.0
            };
            out.push(VariantResult {
                experiment: exp.clone(),
                variant: r.get("variant"),
                sends: n,
                opens: r.get("opens"),
                clicks: r.get("clicks"),
                purchases: s,
                conversion: conv,
                ci_low: lo,
                ci_high: hi,
                p_value: p,
                winner: all_sampled
                    && p.is_some_and(|p| p < 1.0 - confidence)
                    && conv > control_conv,
                min_sample_reached: n >= min_sample,
            });
        }
    }
    Ok(out)
}

/// Vendor cost per sourced lead, by the tier the lead scored (leads scored since `since`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TierCost {
    pub tier: String,
    pub leads: i64,
    pub cost_micros: i64,
    pub cost_per_lead_micros: i64,
}

/// Each lead once, at the tier it last scored in the window, with the sum of its ledger entries.
const COST_PER_TIER: &str = "SELECT s.tier::text AS tier, count(*) AS leads, coalesce(sum(c.m), 0)::int8 AS cost_micros
 FROM (SELECT DISTINCT ON (business_id) business_id, tier FROM scores WHERE scored_at >= $1
       ORDER BY business_id, scored_at DESC) s
 LEFT JOIN LATERAL (SELECT sum(l.cost_micros) m FROM cost_ledger l WHERE l.business_id = s.business_id) c ON true
 GROUP BY s.tier ORDER BY s.tier";

pub async fn cost_per_tier(
    tx: &tokio_postgres::Transaction<'_>,
    since: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<TierCost>, DbError> {
    Ok(tx
        .query(COST_PER_TIER, &[&since])
        .await?
        .iter()
        .map(|r| {
            let (leads, cost): (i64, i64) = (r.get("leads"), r.get("cost_micros"));
            TierCost {
                tier: r.get("tier"),
                leads,
                cost_micros: cost,
                cost_per_lead_micros: if leads > 0 { cost / leads } else { 0 },
            }
        })
        .collect())
}
