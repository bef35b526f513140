//! targeting: begins each tenant's nightly run and expands its active campaigns into sourcing
//! jobs (location × category × page) within each campaign's daily quota.
//!
//! Idempotent: the day's run is one row per tenant, a campaign is expanded once per run (its
//! jobs are stored with the idempotency record before they are sent, and re-sent if a previous
//! invocation stopped in between), and sourcing de-duplicates jobs by key.

mod expand;

use serde::Serialize;
use shared::bus::{Envelope, Queue};
use shared::db::{DbError, begin_tenant};
use shared::domain::{CampaignId, RunId, TenantId};
use shared::pipeline::Stage;
use shared::pipeline::{Deps, Outgoing, StageError, runs};

/// The queues this function sends to (the template grants exactly these).
pub const SENDS_TO: &[Queue] = &[Queue::Sourcing];

pub use expand::{Area, CampaignPlan, Cursor, Expansion, MAX_DEPTH, PAGE, areas, expand};

#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct TargetingReport {
    pub tenants: usize,
    pub runs: Vec<RunId>,
    pub campaigns_expanded: usize,
    /// Campaigns with every area searched to its end: nothing new is left to find there.
    pub campaigns_exhausted: Vec<CampaignId>,
    pub jobs_sent: usize,
}

/// Runs targeting for every tenant. The event (an EventBridge scheduled event) carries nothing
/// the handler needs; its `kind` may be `manual` or `local` when invoked by hand.
pub async fn handler(deps: &Deps, event: serde_json::Value) -> Result<TargetingReport, StageError> {
    let kind = match event
        .get("detail")
        .and_then(|d| d.get("kind"))
        .and_then(|k| k.as_str())
    {
        Some("manual") => "manual",
        Some("local") => "local",
        _ => "nightly",
    };
    let client = deps.pool.get().await.map_err(DbError::from)?;
    let tenants: Vec<TenantId> = shared::db::tenant_ids(&client).await?;
    drop(client);
    let mut report = TargetingReport {
        tenants: tenants.len(),
        ..Default::default()
    };
    for tenant in tenants {
        let (run, expanded, sent, exhausted) = target_tenant(deps, tenant, kind).await?;
        report.runs.push(run);
        report.campaigns_exhausted.extend(exhausted);
        report.campaigns_expanded += expanded;
        report.jobs_sent += sent;
    }
    Ok(report)
}

/// The cursors an expansion leaves, as columns for one `UNNEST`.
#[derive(Default)]
struct CursorColumns {
    parents: Vec<String>,
    campaigns: Vec<uuid::Uuid>,
    locations: Vec<String>,
    categories: Vec<String>,
    offsets: Vec<i32>,
    exhausted: Vec<bool>,
}

impl CursorColumns {
    fn push(
        &mut self,
        expansion: &str,
        campaign: CampaignId,
        location: &str,
        category: &str,
        cursor: &Cursor,
    ) {
        self.parents.push(expansion.to_owned());
        self.campaigns.push(campaign.as_uuid());
        self.locations.push(location.to_owned());
        self.categories.push(category.to_owned());
        self.offsets.push(cursor.next_offset as i32);
        self.exhausted.push(cursor.exhausted());
    }
}

const ACTIVE_CAMPAIGNS: &str = "SELECT id, name, vertical, categories, zip_codes, city, daily_quota FROM campaigns WHERE status = 'active' ORDER BY name";
const CURSORS: &str =
    "SELECT campaign_id, location, category, next_offset, known_total FROM targeting_cursors";
const ADVANCE_CURSORS: &str = "WITH expanded AS (
     INSERT INTO processed_messages (tenant_id, stage, key, status, outcome)
     SELECT $1, $2, k, 'in_progress', o FROM UNNEST($3::text[], $4::jsonb[]) AS x(k, o)
     ON CONFLICT (tenant_id, stage, key) DO NOTHING RETURNING key),
 begun AS (
     INSERT INTO run_work (tenant_id, run_id, queue, key)
     SELECT $1, $5, $6, j.k FROM UNNEST($7::text[], $8::text[]) AS j(parent, k)
     JOIN expanded e ON e.key = j.parent
     ON CONFLICT DO NOTHING RETURNING 1),
 -- The areas' cursors move on with a new expansion only (a re-fired schedule asks for
 -- nothing new and moves nothing).
 moved AS (
     INSERT INTO targeting_cursors AS t (tenant_id, campaign_id, location, category, next_offset, exhausted_at)
     SELECT $1, m.c, m.l, m.k, m.o, CASE WHEN m.x THEN now() END
     FROM UNNEST($9::text[], $10::uuid[], $11::text[], $12::text[], $13::int4[], $14::bool[]) AS m(parent, c, l, k, o, x)
     JOIN expanded e ON e.key = m.parent
     ON CONFLICT (campaign_id, location, category) DO UPDATE SET next_offset = EXCLUDED.next_offset,
         exhausted_at = CASE WHEN EXCLUDED.exhausted_at IS NULL THEN NULL ELSE coalesce(t.exhausted_at, EXCLUDED.exhausted_at) END,
         updated_at = now())
 UPDATE runs SET status = 'running', finished_at = NULL
 WHERE id = $5 AND status <> 'running' AND EXISTS (SELECT 1 FROM begun)";
const IN_PROGRESS_JOBS: &str = "SELECT key, outcome FROM processed_messages WHERE stage = $1 AND status = 'in_progress' AND key = ANY($2)";
const MARK_JOBS_DONE: &str = "UPDATE processed_messages SET status = 'done', outcome = NULL, updated_at = now() WHERE stage = $1 AND key = ANY($2)";

async fn target_tenant(
    deps: &Deps,
    tenant: TenantId,
    kind: &str,
) -> Result<(RunId, usize, usize, Vec<CampaignId>), StageError> {
    let mut client = deps.pool.get().await.map_err(DbError::from)?;
    let tx = begin_tenant(&mut client, tenant).await?;
    let run = runs::begin_run(&tx, tenant, kind).await?;
    let rows = tx.query(ACTIVE_CAMPAIGNS, &[]).await?;
    let names: std::collections::HashMap<uuid::Uuid, String> =
        rows.iter().map(|r| (r.get("id"), r.get("name"))).collect();
    let campaigns: Vec<CampaignPlan> = rows
        .iter()
        .map(|r| CampaignPlan {
            id: CampaignId::from_uuid(r.get("id")),
            vertical: r.get("vertical"),
            categories: r.get("categories"),
            zip_codes: r.get("zip_codes"),
            city: r.get("city"),
            daily_quota: r.get::<_, i32>("daily_quota").max(0) as u32,
        })
        .collect();
    let mut cursors: std::collections::HashMap<
        CampaignId,
        std::collections::HashMap<Area, Cursor>,
    > = std::collections::HashMap::new();
    for r in tx.query(CURSORS, &[]).await? {
        cursors
            .entry(CampaignId::from_uuid(r.get("campaign_id")))
            .or_default()
            .insert(
                (r.get("location"), r.get("category")),
                Cursor {
                    next_offset: r.get::<_, i32>("next_offset").max(0) as u32,
                    known_total: r
                        .get::<_, Option<i32>>("known_total")
                        .map(|t| t.max(0) as u32),
                },
            );
    }
    let mut keys = Vec::new();
    let mut outcomes = Vec::new();
    let (mut job_parents, mut job_keys) = (Vec::new(), Vec::new());
    let mut advanced = CursorColumns::default();
    let mut exhausted = Vec::new();
    for c in &campaigns {
        let expansion = format!("{run}:{}", c.id);
        let night = expand(c, cursors.get(&c.id).unwrap_or(&Default::default()));
        if night.campaign_exhausted() {
            exhausted.push(c.id);
        }
        for ((location, category), cursor) in &night.cursors {
            advanced.push(&expansion, c.id, location, category, cursor);
        }
        let hops = night
            .jobs
            .into_iter()
            .map(|job| {
                let key = format!(
                    "{run}:{}:{}:{}:{}",
                    c.id, job.location, job.category, job.offset
                );
                job_parents.push(expansion.clone());
                job_keys.push(key.clone());
                Outgoing::new(Queue::Sourcing, &Envelope::new(tenant, Some(run), key, job))
            })
            .collect::<Result<Vec<_>, _>>()?;
        keys.push(expansion);
        outcomes.push(serde_json::json!({ "next": hops }));
    }
    // New expansions are stored with their jobs, and the jobs counted as the run's work (a run
    // finished earlier today is open again while they last); ones stored earlier but not sent
    // are re-sent.
    tx.execute(
        ADVANCE_CURSORS,
        &[
            &tenant.as_uuid(),
            &Stage::Targeting.as_str(),
            &keys,
            &outcomes,
            &run.as_uuid(),
            &Queue::Sourcing.name(),
            &job_parents,
            &job_keys,
            &advanced.parents,
            &advanced.campaigns,
            &advanced.locations,
            &advanced.categories,
            &advanced.offsets,
            &advanced.exhausted,
        ],
    )
    .await?;
    let pending = tx
        .query(IN_PROGRESS_JOBS, &[&Stage::Targeting.as_str(), &keys])
        .await?;
    record_exhausted(&tx, tenant, run, &exhausted, &names).await?;
    // A run with nothing to do is finished at once; otherwise its last message finishes it.
    runs::finish_if_done(&tx, &[run]).await?;
    tx.commit().await?;
    let mut bodies = Vec::new();
    let mut sent_keys = Vec::new();
    for r in &pending {
        sent_keys.push(r.get::<_, String>("key"));
        let outcome: Option<serde_json::Value> = r.get("outcome");
        for m in outcome
            .as_ref()
            .and_then(|o| o.get("next"))
            .and_then(|n| n.as_array())
            .into_iter()
            .flatten()
        {
            if let Some(b) = m.get("body").and_then(|b| b.as_str()) {
                bodies.push(b.to_owned());
            }
        }
    }
    deps.bus.send_batch(Queue::Sourcing.name(), &bodies).await?;
    if !sent_keys.is_empty() {
        let tx = begin_tenant(&mut client, tenant).await?;
        tx.execute(MARK_JOBS_DONE, &[&Stage::Targeting.as_str(), &sent_keys])
            .await?;
        tx.commit().await?;
    }
    if let Err(e) = shared::events::flush_on(&mut client, deps.events.as_deref(), tenant).await {
        tracing::warn!(%tenant, error = %e, "domain events not published; the alerts function's sweep tries again");
    }
    tracing::info!(%tenant, %run, campaigns = campaigns.len(), expanded = sent_keys.len(), jobs = bodies.len(), "targeting done");
    if !exhausted.is_empty() {
        tracing::warn!(%tenant, campaigns = exhausted.len(), "campaigns with every area searched to its end");
    }
    Ok((run, sent_keys.len(), bodies.len(), exhausted))
}

/// `CampaignExhausted` for each campaign tonight's expansion found searched to its end, once per
/// campaign and run (a re-fired schedule records nothing new).
async fn record_exhausted(
    tx: &dyn shared::db::Tx,
    tenant: TenantId,
    run: RunId,
    exhausted: &[CampaignId],
    names: &std::collections::HashMap<uuid::Uuid, String>,
) -> Result<(), StageError> {
    use shared::events::{CampaignExhausted, DetailType, Header};
    let events: Vec<CampaignExhausted> = exhausted
        .iter()
        .map(|c| CampaignExhausted {
            header: Header::derived(
                DetailType::CampaignExhausted,
                &format!("{c}:{run}"),
                tenant,
                chrono::Utc::now(),
            ),
            campaign_id: c.as_uuid(),
            campaign_name: names.get(&c.as_uuid()).cloned().unwrap_or_default(),
            run_id: run.as_uuid(),
        })
        .collect();
    shared::events::record(tx, &events).await?;
    Ok(())
}
