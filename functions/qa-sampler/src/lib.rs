//! qa-sampler: when a run finishes (its `RunFinished` event; the schedule after the nightly is
//! the safety net), a deterministic sample of each finished run's top leads —
//! qualified leads ordered by `sha256(run:business)`, the first `n` — goes into `qa_samples`
//! with links to its score, assessment, report and email, for a person to review
//! (`leadfactory qa list|review`). A run is sampled once: a re-run of the schedule changes
//! nothing, and the sample is the same whoever computes it. Reviews feed the QA pass-rate alert.

use serde::Serialize;
use shared::bus::Queue;
use shared::db::{DbError, Pool, begin_tenant};
use shared::domain::TenantId;
use shared::events::{self, EventError, Received, RunFinished};
use shared::pipeline::Deps;

/// This function sends to no queue.
pub const SENDS_TO: &[Queue] = &[];
/// Samples per run (the predecessors' 10 from the top bucket).
pub const DEFAULT_SAMPLE: i64 = 10;

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct SampleReport {
    pub tenants: usize,
    pub runs_sampled: usize,
    pub samples: u64,
}

const SAMPLE_RECENT_RUNS: &str = "SELECT r.id FROM runs r WHERE r.status <> 'running' AND r.finished_at > $1::timestamptz - interval '2 days'
 AND NOT EXISTS (SELECT 1 FROM qa_samples q WHERE q.run_id = r.id) ORDER BY r.finished_at";
const INSERT_SAMPLES: &str = "INSERT INTO qa_samples (id, tenant_id, run_id, business_id, score_id, assessment_id, report_id, email_id)
 SELECT gen_random_uuid(), s.tenant_id, s.run_id, s.business_id, s.id, s.assessment_id, rp.id,
        (SELECT e.id FROM emails e WHERE e.report_id = rp.id AND e.kind = 'outreach' LIMIT 1)
 FROM scores s LEFT JOIN reports rp ON rp.score_id = s.id
 WHERE s.run_id = $1 AND s.qualified
 ORDER BY sha256(convert_to(s.run_id::text || ':' || s.business_id::text, 'UTF8'))
 LIMIT $2
 ON CONFLICT (run_id, business_id) DO NOTHING";

/// Samples every run of every tenant that finished in the last two days and has no sample yet.
pub async fn sample(
    deps: &Deps,
    n: i64,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<SampleReport, DbError> {
    let tenants = shared::db::tenant_ids(&deps.pool.get().await?).await?;
    let mut report = SampleReport {
        tenants: tenants.len(),
        ..SampleReport::default()
    };
    for tenant in tenants {
        let mut c = deps.pool.get().await?;
        let tx = begin_tenant(&mut c, tenant).await?;
        let runs: Vec<uuid::Uuid> = tx
            .query(SAMPLE_RECENT_RUNS, &[&now])
            .await?
            .iter()
            .map(|r| r.get("id"))
            .collect();
        for run in runs {
            let added = tx.execute(INSERT_SAMPLES, &[&run, &n]).await?;
            if added > 0 {
                report.runs_sampled += 1;
                report.samples += added;
            }
        }
        tx.commit().await?;
    }
    Ok(report)
}

/// This consumer's name in `consumed_events`.
pub const CONSUMER: &str = "qa-sampler";

const RUN_SAMPLED: &str = "SELECT EXISTS (SELECT 1 FROM qa_samples WHERE run_id = $1) AS sampled";

/// A run's `RunFinished` samples that run (once per event, and only if it has no sample yet);
/// a schedule's event samples every recent run still without one ([`sample`]).
pub async fn handle(
    deps: &Deps,
    event: &serde_json::Value,
    n: i64,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<SampleReport, EventError> {
    match Received::of(event)? {
        Received::RunFinished(run) => sample_run(deps, &run, n).await,
        Received::Ours(..) => Ok(SampleReport::default()),
        Received::Other => Ok(sample(deps, n, now).await?),
    }
}

async fn sample_run(deps: &Deps, run: &RunFinished, n: i64) -> Result<SampleReport, EventError> {
    let tenant = TenantId::from_uuid(run.header.tenant_id);
    let mut report = SampleReport {
        tenants: 1,
        ..SampleReport::default()
    };
    let mut c = deps.pool.get().await.map_err(DbError::from)?;
    let tx = begin_tenant(&mut c, tenant).await?;
    let fresh = events::consume(&tx, CONSUMER, &run.header).await?;
    let sampled: bool = tx
        .query_one(RUN_SAMPLED, &[&run.run_id])
        .await?
        .get("sampled");
    if fresh && !sampled {
        let added = tx.execute(INSERT_SAMPLES, &[&run.run_id, &n]).await?;
        if added > 0 {
            report.runs_sampled = 1;
            report.samples = added;
        }
    }
    tx.commit().await?;
    Ok(report)
}

/// One sample as a reviewer sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sample {
    pub id: uuid::Uuid,
    pub run_id: uuid::Uuid,
    pub business: String,
    pub website: Option<String>,
    pub score: Option<i16>,
    pub tier: Option<String>,
    pub report_token: Option<String>,
    pub subject: Option<String>,
    pub result: String,
    pub notes: Option<String>,
}

const LIST_SAMPLES: &str = "SELECT q.id, q.run_id, b.name AS business, b.website_url, s.score, s.tier::text AS tier, rp.token AS report_token,
        e.subject, q.result, q.notes
 FROM qa_samples q JOIN businesses b ON b.id = q.business_id
 LEFT JOIN scores s ON s.id = q.score_id LEFT JOIN reports rp ON rp.id = q.report_id LEFT JOIN emails e ON e.id = q.email_id
 WHERE $1 OR q.result = 'needs_review' ORDER BY q.created_at DESC, b.name";

/// Samples of `tenant`, newest first; only those still to review unless `all`.
pub async fn list(pool: &Pool, tenant: TenantId, all: bool) -> Result<Vec<Sample>, DbError> {
    let mut c = pool.get().await?;
    let tx = begin_tenant(&mut c, tenant).await?;
    let rows = tx.query(LIST_SAMPLES, &[&all]).await?;
    tx.commit().await?;
    Ok(rows
        .iter()
        .map(|r| Sample {
            id: r.get("id"),
            run_id: r.get("run_id"),
            business: r.get("business"),
            website: r.get("website_url"),
            score: r.get("score"),
            tier: r.get("tier"),
            report_token: r.get("report_token"),
            subject: r.get("subject"),
            result: r.get("result"),
            notes: r.get("notes"),
        })
        .collect())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Fail,
}

const REVIEW_SAMPLE: &str = "UPDATE qa_samples SET result = $2, reviewer = $3, notes = $4, reviewed_at = now() WHERE id = $1";

/// Records a reviewer's verdict; `false` when there is no such sample for the tenant.
pub async fn review(
    pool: &Pool,
    tenant: TenantId,
    id: uuid::Uuid,
    verdict: Verdict,
    reviewer: &str,
    notes: Option<&str>,
) -> Result<bool, DbError> {
    let result = match verdict {
        Verdict::Pass => "pass",
        Verdict::Fail => "fail",
    };
    let mut c = pool.get().await?;
    let tx = begin_tenant(&mut c, tenant).await?;
    let n = tx
        .execute(REVIEW_SAMPLE, &[&id, &result, &reviewer, &notes])
        .await?;
    tx.commit().await?;
    Ok(n == 1)
}
