//! What a night did, read back from the database, and its artefacts (PDF reports, the sent
//! mail) written out for a person to look at.

use std::path::PathBuf;

use shared::db::{DbError, Pool, begin_tenant};
use shared::domain::{RunId, TenantId};

use super::{LocalError, LocalPipeline};

/// The run's figures, read back from the database.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RunSummary {
    pub jobs: i64,
    pub sourced: i64,
    pub duplicates: i64,
    pub closed: i64,
    pub enriched: i64,
    pub assessed: i64,
    pub unreachable: i64,
    pub scored: i64,
    pub tiers: Vec<(String, i64)>,
    pub qualified: i64,
    pub reports: i64,
    pub emails: i64,
    /// Outreach emails of the run, by what became of them.
    pub sent: i64,
    pub deferred: i64,
    pub send_failed: i64,
    pub delivered: i64,
    pub opened: i64,
    pub clicked: i64,
    pub bounced: i64,
    pub unsubscribed: i64,
    pub purchased: i64,
    pub revenue_cents: i64,
    pub fulfilled: i64,
    pub skipped_by_budget: i64,
    pub failed: i64,
    pub vendors: Vec<(String, i64, i64)>,
    pub cost_micros: i64,
    /// The run's compute as AWS bills it (`compute_usage`): nano-dollars, invocations and
    /// MB-milliseconds.
    pub infra_nanos: i64,
    pub invocations: i64,
    pub mb_ms: i64,
    /// Leads the qa-sampler sampled from the run for review.
    pub qa_samples: i64,
    /// Domain events recorded since the run began: (detail type, published, still waiting).
    pub events: Vec<(String, i64, i64)>,
}

impl RunSummary {
    /// Compute cost per 1,000 sourced leads, in micro-dollars.
    pub fn infra_per_1000_leads_micros(&self) -> Option<i64> {
        (self.sourced > 0).then(|| self.infra_nanos / self.sourced)
    }

    /// Vendor cost per 1,000 sourced leads, in micro-dollars.
    pub fn vendor_per_1000_leads_micros(&self) -> Option<i64> {
        (self.sourced > 0).then(|| self.cost_micros * 1_000 / self.sourced)
    }

    /// Vendor spend per qualified lead, the figure an agency prices against (most of a night's
    /// spend goes on businesses that never qualify).
    pub fn cost_per_qualified_micros(&self) -> Option<i64> {
        (self.qualified > 0).then(|| self.cost_micros / self.qualified)
    }
}

/// Counts of a run's events for one stage, by event name.
const COUNT_EVENTS: &str =
    "SELECT count(*) AS n FROM run_event_logs WHERE run_id = $1 AND stage = $2 AND event = ANY($3)";

const COUNT_SKIPPED_AND_FAILED: &str =
    "SELECT count(*) FILTER (WHERE event = 'SKIPPED_DUE_TO_BUDGET') AS skipped_by_budget,
        count(*) FILTER (WHERE status = 'error') AS failed
 FROM run_event_logs WHERE run_id = $1";

const COUNT_OUTREACH: &str = "SELECT count(*) FILTER (WHERE send_state = 'sent') AS sent,
        count(*) FILTER (WHERE send_state = 'queued') AS deferred,
        count(*) FILTER (WHERE send_state IN ('failed', 'unknown')) AS send_failed,
        count(delivered_at) AS delivered, count(opened_at) AS opened, count(clicked_at) AS clicked,
        count(*) FILTER (WHERE delivery_status IN ('bounced', 'dropped')) AS bounced,
        count(unsubscribed_at) AS unsubscribed
 FROM emails WHERE run_id = $1 AND kind = 'outreach'";

const COUNT_PURCHASES: &str = "SELECT count(*) AS purchased,
        coalesce(sum(p.amount_cents - p.refunded_cents), 0)::int8 AS revenue_cents,
        count(p.fulfilled_at) AS fulfilled
 FROM purchases p JOIN emails e ON e.id = p.email_id
 WHERE e.run_id = $1 AND p.status IN ('paid', 'partially_refunded', 'refunded')";

const COUNT_TIERS: &str =
    "SELECT tier::text AS tier, count(*) AS scored, count(*) FILTER (WHERE qualified) AS qualified
 FROM scores WHERE run_id = $1 GROUP BY tier ORDER BY tier";

const RUN_COMPUTE: &str = "SELECT coalesce(sum(cost_nanos), 0)::int8 AS nanos, coalesce(sum(invocations), 0)::int8 AS invocations,
        coalesce(sum(billed_ms * memory_mb), 0)::int8 AS mb_ms
 FROM compute_usage WHERE run_id = $1";

const QA_SAMPLES: &str = "SELECT count(*) AS n FROM qa_samples WHERE run_id = $1";

const DOMAIN_EVENTS: &str = "SELECT detail_type, count(published_at) AS published, count(*) FILTER (WHERE published_at IS NULL) AS waiting
 FROM domain_events WHERE occurred_at >= (SELECT started_at FROM runs WHERE id = $1) GROUP BY detail_type ORDER BY detail_type";

const VENDOR_USAGE: &str =
    "SELECT vendor, calls, cost_micros FROM run_vendor_usage WHERE run_id = $1 ORDER BY vendor";

pub async fn summarize(pool: &Pool, tenant: TenantId, run: RunId) -> Result<RunSummary, DbError> {
    let mut c = pool.get().await?;
    let tx = begin_tenant(&mut c, tenant).await?;
    let count = |stage: &'static str, events: &'static [&'static str]| {
        let tx = &tx;
        async move {
            let events: Vec<&str> = events.to_vec();
            tx.query_one(COUNT_EVENTS, &[&run.as_uuid(), &stage, &events])
                .await
                .map(|r| r.get::<_, i64>("n"))
        }
    };
    let mut s = RunSummary {
        jobs: count("sourcing", &["page", "SKIPPED_DUE_TO_BUDGET"]).await?,
        sourced: count("sourcing", &["sourced", "stale", "known"]).await?,
        duplicates: count("sourcing", &["duplicate"]).await?,
        closed: count("sourcing", &["closed"]).await? + count("enrichment", &["closed"]).await?,
        enriched: count("enrichment", &["enriched"]).await?,
        assessed: count("assessment", &["assessed", "site_unreachable"]).await?,
        unreachable: count("assessment", &["site_unreachable"]).await?,
        reports: count("reports", &["rendered"]).await?,
        emails: count("personalization", &["written:llm", "written:template"]).await?,
        ..RunSummary::default()
    };
    let r = tx
        .query_one(COUNT_SKIPPED_AND_FAILED, &[&run.as_uuid()])
        .await?;
    s.skipped_by_budget = r.get("skipped_by_budget");
    s.failed = r.get("failed");
    let f = tx.query_one(COUNT_OUTREACH, &[&run.as_uuid()]).await?;
    s.sent = f.get("sent");
    s.deferred = f.get("deferred");
    s.send_failed = f.get("send_failed");
    s.delivered = f.get("delivered");
    s.opened = f.get("opened");
    s.clicked = f.get("clicked");
    s.bounced = f.get("bounced");
    s.unsubscribed = f.get("unsubscribed");
    let p = tx.query_one(COUNT_PURCHASES, &[&run.as_uuid()]).await?;
    s.purchased = p.get("purchased");
    s.revenue_cents = p.get("revenue_cents");
    s.fulfilled = p.get("fulfilled");
    for row in tx.query(COUNT_TIERS, &[&run.as_uuid()]).await? {
        let n: i64 = row.get("scored");
        s.scored += n;
        s.qualified += row.get::<_, i64>("qualified");
        s.tiers.push((row.get("tier"), n));
    }
    for row in tx.query(VENDOR_USAGE, &[&run.as_uuid()]).await? {
        let cost: i64 = row.get("cost_micros");
        s.cost_micros += cost;
        s.vendors.push((
            row.get("vendor"),
            i64::from(row.get::<_, i32>("calls")),
            cost,
        ));
    }
    s.qa_samples = tx.query_one(QA_SAMPLES, &[&run.as_uuid()]).await?.get("n");
    let c = tx.query_one(RUN_COMPUTE, &[&run.as_uuid()]).await?;
    s.infra_nanos = c.get("nanos");
    s.invocations = c.get("invocations");
    s.mb_ms = c.get("mb_ms");
    for row in tx.query(DOMAIN_EVENTS, &[&run.as_uuid()]).await? {
        s.events.push((
            row.get("detail_type"),
            row.get("published"),
            row.get("waiting"),
        ));
    }
    tx.commit().await?;
    Ok(s)
}

const RUN_REPORTS: &str = "SELECT b.name, r.full_key FROM reports r JOIN businesses b ON b.id = r.business_id WHERE r.run_id = $1 ORDER BY b.name";

/// Copies the run's full PDF reports from the store to `dir/<business>.pdf`; returns the paths.
pub async fn export_reports(
    p: &LocalPipeline,
    run: RunId,
    dir: &std::path::Path,
) -> Result<Vec<PathBuf>, LocalError> {
    let mut c = p.deps.pool.get().await.map_err(DbError::from)?;
    let tx = begin_tenant(&mut c, p.tenant).await?;
    let rows = tx
        .query(RUN_REPORTS, &[&run.as_uuid()])
        .await
        .map_err(DbError::from)?;
    tx.commit().await.map_err(DbError::from)?;
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(LocalError::Sim)?;
    let mut out = Vec::new();
    for r in rows {
        let name: String = r.get("name");
        let slug = shared::domain::slug(&name);
        let key = shared::store::ObjectKey::parse(&r.get::<_, String>("full_key"))?;
        let pdf = p.deps.store.get(&key).await?;
        let path = dir.join(format!("{slug}.pdf"));
        tokio::fs::write(&path, &pdf)
            .await
            .map_err(LocalError::Sim)?;
        out.push(path);
    }
    Ok(out)
}

/// Writes every message the simulated SendGrid accepted as an `.eml` file under `dir`
/// (attachments are listed in a header, not embedded: the outbox keeps only their count).
pub async fn export_outbox(
    p: &LocalPipeline,
    dir: &std::path::Path,
) -> Result<Vec<PathBuf>, LocalError> {
    use mail_builder::MessageBuilder;
    use mail_builder::headers::raw::Raw;
    let mails: Vec<sim::state::OutboxMail> = sim::state::lock(&p.sim.state.outbox).clone();
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(LocalError::Sim)?;
    let mut out = Vec::new();
    for (i, m) in mails.iter().enumerate() {
        let to = m.to.join(", ");
        let mut b = MessageBuilder::new()
            .from(m.from.clone())
            .to(to.clone())
            .subject(m.subject.clone())
            .message_id(format!("{}@sim.sendgrid.net", m.message_id))
            .date(m.received_at);
        if let Some(h) = m.headers.as_object() {
            for (k, v) in h {
                if let Some(v) = v.as_str() {
                    b = b.header(k.clone(), Raw::new(v.to_owned()));
                }
            }
        }
        if m.attachments > 0 {
            b = b.header(
                "X-LeadFactory-Attachments",
                Raw::new(m.attachments.to_string()),
            );
        }
        if let Some(t) = &m.text {
            b = b.text_body(t.clone());
        }
        if let Some(h) = &m.html {
            b = b.html_body(h.clone());
        }
        let bytes = b.write_to_vec().map_err(LocalError::Sim)?;
        let kind = m
            .custom_args
            .get("purchase_id")
            .map_or("outreach", |_| "fulfilment");
        let who: String = to
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '@' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let path = dir.join(format!("{:03}-{kind}-{who}.eml", i + 1));
        tokio::fs::write(&path, bytes)
            .await
            .map_err(LocalError::Sim)?;
        out.push(path);
    }
    Ok(out)
}
