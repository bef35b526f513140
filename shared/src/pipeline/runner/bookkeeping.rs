//! What a batch records besides its results: its spend (vendor usage, the cost ledger, spend
//! against the budget and reservations given back), committed on its own before the results so
//! a paid call is recorded whatever becomes of them; and, with the results, the run events and
//! the run work of messages that died. And the vendor metrics.

use std::collections::BTreeMap;

use super::super::budget::{self, BudgetClass};
use super::super::runs::{self, RunEvent};
use super::WorkError;
use crate::bus::Envelope;
use crate::db::{DbError, Tx, cached};
use crate::domain::{RunId, TenantId};
use crate::vendors::CallRecord;

/// A message that failed on its last receive, with the error that ended it.
pub(super) struct DeadWork {
    pub(super) run: RunId,
    pub(super) key: String,
    pub(super) reason: String,
}

/// The run event of a message whose work failed.
pub(super) fn failure_event<P>(
    stage: &'static str,
    env: &Envelope<P>,
    error: &WorkError,
    duration_ms: i32,
) -> RunEvent {
    RunEvent {
        run: env.run_id,
        stage,
        entity_id: None,
        event: "failed".into(),
        status: "error",
        error_code: Some(match error {
            WorkError::Permanent(_) => "permanent".into(),
            WorkError::Transient(_) => "transient".into(),
        }),
        duration_ms: Some(duration_ms),
        trace_id: env.trace_id.clone(),
        extra: serde_json::json!({ "error": error.to_string() }),
    }
}

/// What the batch's vendor calls cost, per budget class.
pub(super) fn spend_by_class(records: &[CallRecord]) -> Vec<(BudgetClass, i64)> {
    let mut spend: BTreeMap<BudgetClass, i64> = BTreeMap::new();
    for r in records {
        if let Some(class) = BudgetClass::of(r.vendor) {
            *spend.entry(class).or_default() += r.cost_micros;
        }
    }
    spend.into_iter().collect()
}

/// What a batch's work spent: its vendor calls (paid whether the work succeeded or not), and
/// the reservation of paid calls that will not be stored, given back — a vendor outage or a
/// failed store must not use up the day's budget without spending it (the retry reserves again).
pub(super) struct Spend<'a> {
    pub(super) tenant: TenantId,
    pub(super) calls: &'a [CallRecord],
    pub(super) unspent: Option<(BudgetClass, i64)>,
}

impl Spend<'_> {
    /// Whether there is anything to write (a stage without vendor calls has nothing).
    pub(super) fn is_empty(&self) -> bool {
        self.calls.is_empty() && self.unspent.is_none_or(|(_, micros)| micros <= 0)
    }
}

/// Writes the spend. Its statements do not depend on one another and each starts when first
/// polled, so they travel together with the commit; their results are read in order, so the
/// error returned is the one that made the transaction roll back, not a later "transaction is
/// aborted".
pub(super) async fn write_spend(tx: &dyn Tx, spend: &Spend<'_>) -> Result<(), DbError> {
    let tenant = spend.tenant;
    let by_class = spend_by_class(spend.calls);
    let (used, released, spent) = futures_util::future::join3(
        runs::record_vendor_usage(tx, tenant, spend.calls),
        async {
            match spend.unspent {
                Some((class, micros)) => budget::release(tx, tenant, class, micros).await,
                None => Ok(()),
            }
        },
        budget::record_spend(tx, tenant, &by_class),
    )
    .await;
    used?;
    released?;
    spent
}

/// What is recorded with the results, in one tenant's store transaction.
pub(super) struct Books<'a> {
    pub(super) tenant: TenantId,
    pub(super) input_queue: &'a str,
    pub(super) events: &'a [RunEvent],
    pub(super) dead: &'a [DeadWork],
}

/// Writes the books, both statements travelling with the commit (as [`write_spend`]).
pub(super) async fn write(tx: &dyn Tx, books: &Books<'_>) -> Result<(), DbError> {
    let (logged, dead) = futures_util::future::join(
        runs::insert_events(tx, books.tenant, books.events),
        mark_dead(tx, books.input_queue, books.dead),
    )
    .await;
    logged?;
    dead
}

const MARK_DEAD: &str = "UPDATE run_work w SET state = 'dead', reason = x.why, updated_at = now()
 FROM UNNEST($1::uuid[], $2::text[], $3::text[]) AS x(r, k, why)
 WHERE w.run_id = x.r AND w.queue = $4 AND w.key = x.k";

/// Marks the run work of messages that failed on their last receive as `dead`, with the error:
/// the queue moves them to its DLQ, and their run ends with a failure instead of waiting.
async fn mark_dead(tx: &dyn Tx, queue: &str, dead: &[DeadWork]) -> Result<(), DbError> {
    cached::execute_if(
        tx,
        !dead.is_empty(),
        MARK_DEAD,
        &[
            &dead.iter().map(|d| d.run.as_uuid()).collect::<Vec<_>>(),
            &dead.iter().map(|d| d.key.as_str()).collect::<Vec<_>>(),
            &dead.iter().map(|d| d.reason.as_str()).collect::<Vec<_>>(),
            &queue,
        ],
    )
    .await
    .map(|_| ())
}

/// One EMF line per vendor called in the batch: calls, errors, rate-limit hits, cost, latency.
pub(super) fn emit_vendor_metrics(stage: &str, records: &[CallRecord]) {
    use crate::obs::metrics::{MetricLine, Unit};
    #[derive(Default)]
    struct Sums {
        calls: usize,
        errors: usize,
        limited: usize,
        cost: i64,
        latency: u64,
    }
    let mut by: BTreeMap<&str, Sums> = BTreeMap::new();
    for r in records {
        let e = by.entry(r.vendor.as_str()).or_default();
        e.calls += 1;
        e.errors += usize::from(!r.ok);
        e.limited += usize::from(r.rate_limited);
        e.cost += r.cost_micros;
        e.latency += u64::from(r.latency_ms);
    }
    for (
        vendor,
        Sums {
            calls,
            errors,
            limited,
            cost,
            latency,
        },
    ) in by
    {
        MetricLine::new()
            .dimension("Stage", stage)
            .dimension("Vendor", vendor)
            .value("VendorCalls", calls as f64, Unit::Count)
            .value("VendorErrors", errors as f64, Unit::Count)
            .value("VendorRateLimited", limited as f64, Unit::Count)
            .value("VendorCostMicros", cost as f64, Unit::None)
            .value(
                "VendorLatencyAvg",
                latency as f64 / calls.max(1) as f64,
                Unit::Milliseconds,
            )
            .emit();
    }
}
