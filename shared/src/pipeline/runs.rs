//! Run tracking: a `run` per nightly execution; one event row per business per stage (PII
//! hashed, batched); vendor usage per run (upserted additively).
//!
//! A run finishes by itself. Every message it has on a queue is a `run_work` row, begun and
//! ended in the transactions that record next hops and mark messages processed (the batch
//! runner's `claim_keys`, targeting's expansion); a message failing on its last receive is
//! marked dead. The batch that ends a run's last message finalises it ([`finish_if_done`]:
//! stage percentiles in SQL, status succeeded / partial / failed), and the scheduled check
//! ([`finish_idle`], in the alerts function) finalises a run whose work stopped moving as
//! `stalled`. The SQL lives in `migrations/V6__run_completion.sql`.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::db::{DbError, Tx, cached};
use crate::domain::{RunId, TenantId};
use crate::vendors::CallRecord;

const INSERT_RUN: &str = "INSERT INTO runs (id, tenant_id, kind) VALUES ($1, $2, $3)
 ON CONFLICT (tenant_id, run_date) WHERE kind = 'nightly' DO NOTHING RETURNING id";
const TODAYS_NIGHTLY: &str =
    "SELECT id FROM runs WHERE tenant_id = $1 AND run_date = current_date AND kind = 'nightly'";

/// Begins the tenant's run: the nightly run of today is one row, so a re-fired schedule joins it.
pub async fn begin_run(tx: &dyn Tx, tenant: TenantId, kind: &str) -> Result<RunId, DbError> {
    let id = RunId::new();
    let row = cached::query_opt(tx, INSERT_RUN, &[&id.as_uuid(), &tenant.as_uuid(), &kind]).await?;
    if let Some(r) = row {
        return Ok(RunId::from_uuid(r.get("id")));
    }
    let r = cached::query_one(tx, TODAYS_NIGHTLY, &[&tenant.as_uuid()]).await?;
    Ok(RunId::from_uuid(r.get("id")))
}

/// One run event, ready for a batched insert.
#[derive(Debug, Clone, Serialize)]
pub struct RunEvent {
    pub run: Option<RunId>,
    pub stage: &'static str,
    pub entity_id: Option<String>,
    pub event: String,
    /// `ok`, `error` or `skipped`.
    pub status: &'static str,
    pub error_code: Option<String>,
    /// Set on the one event per processed message (a latency sample); `None` on per-entity
    /// detail events and markers, which stage statistics do not count.
    pub duration_ms: Option<i32>,
    pub trace_id: String,
    pub extra: serde_json::Value,
}

const INSERT_EVENTS: &str = "INSERT INTO run_event_logs (tenant_id, run_id, stage, entity_id, event, status, error_code, duration_ms, trace_id, extra)
 SELECT $1, r, s, e, ev, st, ec, d, t, x
 FROM UNNEST($2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::int4[], $9::text[], $10::jsonb[])
      AS u(r, s, e, ev, st, ec, d, t, x)";

/// Inserts events in one statement.
pub async fn insert_events(
    tx: &dyn Tx,
    tenant: TenantId,
    events: &[RunEvent],
) -> Result<(), DbError> {
    if events.is_empty() {
        return Ok(());
    }
    cached::execute(
        tx,
        INSERT_EVENTS,
        &[
            &tenant.as_uuid(),
            &events
                .iter()
                .map(|e| e.run.map(|r| r.as_uuid()))
                .collect::<Vec<_>>(),
            &events.iter().map(|e| e.stage).collect::<Vec<_>>(),
            &events
                .iter()
                .map(|e| e.entity_id.clone())
                .collect::<Vec<_>>(),
            &events.iter().map(|e| e.event.as_str()).collect::<Vec<_>>(),
            &events.iter().map(|e| e.status).collect::<Vec<_>>(),
            &events
                .iter()
                .map(|e| e.error_code.clone())
                .collect::<Vec<_>>(),
            &events
                .iter()
                .map(|e| e.duration_ms)
                .collect::<Vec<Option<i32>>>(),
            &events
                .iter()
                .map(|e| e.trace_id.as_str())
                .collect::<Vec<_>>(),
            &events.iter().map(|e| e.extra.clone()).collect::<Vec<_>>(),
        ],
    )
    .await?;
    Ok(())
}

const RECORD_VENDOR_USAGE: &str = "INSERT INTO run_vendor_usage AS u (run_id, tenant_id, vendor, calls, errors, tokens_in, tokens_out, cost_micros, rate_limit_hits, quota_exhausted)
 SELECT r, $1, v, c, e, ti, tto, co, rl, q
 FROM UNNEST($2::uuid[], $3::text[], $4::int4[], $5::int4[], $6::int8[], $7::int8[], $8::int8[], $9::int4[], $10::bool[])
      AS x(r, v, c, e, ti, tto, co, rl, q)
 ON CONFLICT (run_id, vendor) DO UPDATE SET
    calls = u.calls + EXCLUDED.calls, errors = u.errors + EXCLUDED.errors,
    tokens_in = u.tokens_in + EXCLUDED.tokens_in, tokens_out = u.tokens_out + EXCLUDED.tokens_out,
    cost_micros = u.cost_micros + EXCLUDED.cost_micros, rate_limit_hits = u.rate_limit_hits + EXCLUDED.rate_limit_hits,
    quota_exhausted = u.quota_exhausted OR EXCLUDED.quota_exhausted";

/// Adds call records to `run_vendor_usage` (one statement) and the cost ledger (one statement),
/// sent together.
pub async fn record_vendor_usage(
    tx: &dyn Tx,
    tenant: TenantId,
    records: &[CallRecord],
) -> Result<(), DbError> {
    let mine: Vec<&CallRecord> = records
        .iter()
        .filter(|r| r.tenant == Some(tenant))
        .collect();
    if mine.is_empty() {
        return Ok(());
    }
    #[derive(Default)]
    struct U {
        calls: i32,
        errors: i32,
        tin: i64,
        tout: i64,
        cost: i64,
        rl: i32,
        quota: bool,
    }
    let mut by: BTreeMap<(RunId, &str), U> = BTreeMap::new();
    for r in mine.iter().filter(|r| r.run.is_some()) {
        let Some(run) = r.run else { continue };
        let u = by.entry((run, r.vendor.as_str())).or_default();
        u.calls += 1;
        u.errors += i32::from(!r.ok);
        u.tin += i64::from(r.tokens_in);
        u.tout += i64::from(r.tokens_out);
        u.cost += r.cost_micros;
        u.rl += i32::from(r.rate_limited);
        u.quota |= r.quota_exhausted;
    }
    let keys: Vec<_> = by.keys().collect();
    let vals: Vec<_> = by.values().collect();
    let owned: Vec<CallRecord> = mine.into_iter().cloned().collect();
    // Both statements start at once, so the pair can travel with a pipelined commit.
    let (usage, ledger) = futures_util::future::join(
        cached::execute_if(
            tx,
            !by.is_empty(),
            RECORD_VENDOR_USAGE,
            &[
                &tenant.as_uuid(),
                &keys.iter().map(|(r, _)| r.as_uuid()).collect::<Vec<_>>(),
                &keys.iter().map(|(_, v)| *v).collect::<Vec<_>>(),
                &vals.iter().map(|u| u.calls).collect::<Vec<_>>(),
                &vals.iter().map(|u| u.errors).collect::<Vec<_>>(),
                &vals.iter().map(|u| u.tin).collect::<Vec<_>>(),
                &vals.iter().map(|u| u.tout).collect::<Vec<_>>(),
                &vals.iter().map(|u| u.cost).collect::<Vec<_>>(),
                &vals.iter().map(|u| u.rl).collect::<Vec<_>>(),
                &vals.iter().map(|u| u.quota).collect::<Vec<_>>(),
            ],
        ),
        crate::vendors::record::insert_ledger(tx, tenant, &owned),
    )
    .await;
    usage?;
    ledger?;
    Ok(())
}

const FINISH_RUNS: &str = "SELECT finish_runs($1::uuid[]) AS n";

/// Finalises those of `runs` whose work has all ended (the SQL function `finish_runs`, which
/// computes stage counts and p50/p95/p99 and sets the status); returns how many it finalised.
pub async fn finish_if_done(tx: &dyn Tx, runs: &[RunId]) -> Result<i32, DbError> {
    let ids: Vec<uuid::Uuid> = runs.iter().map(RunId::as_uuid).collect();
    let row = cached::query_one(tx, FINISH_RUNS, &[&ids]).await?;
    Ok(row.get("n"))
}

/// A run the scheduled check finalised, and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinishedRun {
    pub run: RunId,
    /// `stalled` when work was still pending; otherwise as [`finish_if_done`] decides.
    pub status: String,
}

const FINISH_IDLE: &str = "SELECT run_id, status FROM finish_idle_runs($1)";

/// The scheduled check: finalises the tenant's running runs in which nothing has moved since
/// `idle_since` (`stalled` when work is still pending).
pub async fn finish_idle(
    tx: &dyn Tx,
    idle_since: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<FinishedRun>, DbError> {
    Ok(cached::query(tx, FINISH_IDLE, &[&idle_since])
        .await?
        .iter()
        .map(|r| FinishedRun {
            run: RunId::from_uuid(r.get("run_id")),
            status: r.get("status"),
        })
        .collect())
}

/// A message found in a dead-letter queue: the queue it was dead-lettered from and its key.
#[derive(Debug, Clone)]
pub struct DeadLettered {
    pub queue: String,
    pub run: RunId,
    pub key: String,
}

const END_DEAD_LETTERS: &str = "WITH m(r, q, k) AS (SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[])),
 own AS (
     UPDATE run_work w SET state = 'dead', updated_at = now(),
         reason = 'dead-lettered from ' || m.q || ' with no failure recorded (the function was killed or timed out on its last receive)'
     FROM m WHERE w.run_id = m.r AND w.queue = m.q AND w.key = m.k AND w.state = 'pending'
     RETURNING w.run_id),
 hops AS (
     UPDATE run_work w SET state = 'dead', updated_at = now(),
         reason = 'not sent: the ' || m.q || ' message ' || m.k || ' that stored it was dead-lettered before sending it (redrive ' || m.q || ')'
     FROM m JOIN processed_messages p ON p.stage = m.q AND p.key = m.k AND p.status = 'in_progress',
          jsonb_to_recordset(p.outcome -> 'next') AS n(queue text, run uuid, key text)
     WHERE w.run_id = n.run AND w.queue = n.queue AND w.key = n.key AND w.state = 'pending'
     RETURNING w.run_id)
 SELECT (SELECT count(*) FROM own) + (SELECT count(*) FROM hops) AS ended";

/// Ends, as dead, the run work of messages SQS moved to a DLQ without the function recording
/// their failure (killed or timed out on the last receive), and finalises the runs that leaves
/// with nothing pending. A message whose results were stored but whose next hops were never sent
/// (`in_progress`) ends its next hops' work instead: a redrive sends them. Rows already ended are
/// left alone, so running it again changes nothing. Returns the rows it ended.
pub async fn end_dead_letters(tx: &dyn Tx, letters: &[DeadLettered]) -> Result<u64, DbError> {
    if letters.is_empty() {
        return Ok(0);
    }
    let runs: Vec<uuid::Uuid> = letters.iter().map(|l| l.run.as_uuid()).collect();
    let queues: Vec<&str> = letters.iter().map(|l| l.queue.as_str()).collect();
    let keys: Vec<&str> = letters.iter().map(|l| l.key.as_str()).collect();
    // A stage's records are kept under its input queue's name.
    let ended = cached::query(tx, END_DEAD_LETTERS, &[&runs, &queues, &keys]).await?;
    let n: i64 = ended.first().map(|r| r.get("ended")).unwrap_or(0);
    let unique: Vec<RunId> = letters
        .iter()
        .map(|l| l.run)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    finish_if_done(tx, &unique).await?;
    Ok(u64::try_from(n).unwrap_or(0))
}
