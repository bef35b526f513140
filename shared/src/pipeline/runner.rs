//! The batch runner every SQS-triggered stage uses.
//!
//! For one batch, per tenant:
//! 1. one query reads the idempotency records of the batch's keys (the transaction's start
//!    travels with it, see [`PipelinedTx`], and so does the stage's load if it only reads): a
//!    message already done is acknowledged; one whose results were stored but whose next hop
//!    was not yet sent (a crash between commit and send) has its stored next hop sent now;
//! 2. the budget gate grants the batch's paid calls in one reservation, sent with the commit of
//!    the same transaction;
//! 3. the stage's per-message work (vendor calls, fetches) runs concurrently, outside any
//!    transaction;
//! 4. one transaction stores the results with set-based statements (its start travelling with the
//!    first), then the idempotency records (with the next-hop messages as their outcome), the run
//!    events, vendor usage and ledger, sent together with the commit (pipelined) as they do not
//!    depend on one another;
//! 5. the next hop is sent in batches and the records marked done (one pipelined round trip).
//!
//! Round trips per batch are constant, whatever its size. Unparseable messages and failed work
//! are reported as failures, so SQS redelivers them and finally moves them to the DLQ.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::runs::{self, RunEvent};
use super::{Deps, StageError};
use crate::bus::Envelope;
use crate::db::{DbError, PipelinedTx, Tx, cached, execute_alone};
use crate::domain::{RunId, TenantId};

/// A message as it arrived (SQS record or local bus delivery).
#[derive(Debug, Clone)]
pub struct Incoming {
    pub id: String,
    pub body: String,
    /// How many times the queue has handed this message out, this time included (SQS's
    /// `ApproximateReceiveCount`). A failure at the queue's `maxReceiveCount` is the message's
    /// last: it moves to the dead-letter queue, and its run counts it as ended with a failure.
    pub receive_count: u32,
}

/// A next-hop message: the body, and the run and key it is counted under until it ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outgoing {
    pub queue: String,
    pub body: String,
    #[serde(default)]
    pub run: Option<RunId>,
    #[serde(default)]
    pub key: String,
}

impl Outgoing {
    /// `env` on its way to `queue`.
    pub fn new<P: Serialize>(queue: &str, env: &Envelope<P>) -> Result<Self, StageError> {
        Ok(Self {
            queue: queue.to_owned(),
            body: env.to_body()?,
            run: env.run_id,
            key: env.idempotency_key.clone(),
        })
    }

    /// The same lead handed on to `queue`: same payload, key, tenant, run and trace.
    pub fn forward<P: Serialize + Clone>(
        env: &Envelope<P>,
        queue: &str,
    ) -> Result<Self, StageError> {
        Self::new(
            queue,
            &env.child(env.idempotency_key.clone(), env.payload.clone()),
        )
    }
}

/// Why one message's work failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WorkError {
    /// Retrying cannot help (bad payload, unknown business): ends in the DLQ.
    #[error("permanent: {0}")]
    Permanent(String),
    /// May succeed on redelivery (vendor down, rate limited).
    #[error("transient: {0}")]
    Transient(String),
}

impl From<crate::vendors::VendorError> for WorkError {
    fn from(e: crate::vendors::VendorError) -> Self {
        if e.is_transient() {
            WorkError::Transient(e.to_string())
        } else {
            WorkError::Permanent(e.to_string())
        }
    }
}

impl From<DbError> for WorkError {
    fn from(e: DbError) -> Self {
        WorkError::Transient(e.to_string())
    }
}

/// A message whose work succeeded, with what the work produced.
pub struct StageItem<P, W> {
    pub env: Envelope<P>,
    pub work: W,
    pub duration_ms: i32,
}

/// How one item is logged as a run event.
pub struct EventInfo {
    pub entity_id: Option<String>,
    pub event: String,
    /// `ok` or `skipped`.
    pub status: &'static str,
    pub extra: serde_json::Value,
    /// A marker beside the item's main event (e.g. a skipped paid step): not a latency sample.
    pub marker: bool,
}

/// A stage: what it does per message, and how it stores a batch of results.
#[async_trait]
pub trait StageHandler: Send + Sync {
    type Payload: DeserializeOwned + Serialize + Send + Sync + 'static;
    type Work: Send + Sync + 'static;
    /// What the batch's work reads from the database, loaded in one query before it.
    type Context: Send + Sync + 'static;

    fn stage(&self) -> &'static str;

    /// The queue this stage consumes: the one its messages wait on while their run counts them.
    fn input_queue(&self) -> &'static str;

    /// The only queues this stage may send to (its `SENDS_TO`, which the template grants).
    fn sends_to(&self) -> &'static [&'static str];

    /// Reads what the work needs for these messages, in one round trip for the batch: its
    /// statements must all start when it is first polled, as it may travel with the commit
    /// ([`PipelinedTx::commit_after`]).
    async fn load(
        &self,
        tx: &dyn Tx,
        tenant: TenantId,
        envs: &[&Envelope<Self::Payload>],
    ) -> Result<Self::Context, DbError>;

    /// Whether this stage takes messages that name no run (delivery's backlog, fulfilment's
    /// purchases). Every other message proves its tenant by naming a run the tenant holds; one
    /// that names no run proves it only by the rows it names, which `load` reads under the
    /// tenant's row-level security, and its failure is never recorded as a run event.
    fn takes_runless(&self) -> bool {
        false
    }

    /// Whether `load` changes rows (claims or parks them, as delivery does). A load that only
    /// reads is given the whole batch, duplicates included, and runs in the same round trip as
    /// the idempotency check; one that writes is given only the messages not done yet.
    fn load_writes(&self) -> bool {
        false
    }

    /// How many messages' work runs at once.
    fn concurrency(&self) -> usize {
        8
    }

    /// The longest one message's work can take under the configured vendor policies: the sum
    /// of the time budgets of the calls it makes one after another (each call's
    /// `max_call_time`, retries included). The template test checks that a batch of this fits
    /// the function's Timeout; at run time the invocation's deadline bounds it as well.
    fn worst_case_work(&self, _vendors: &crate::vendors::config::VendorsConfig) -> Duration {
        Duration::ZERO
    }

    /// The budget class and unit cost of the stage's paid call, if it has one.
    fn budget(&self, _deps: &Deps) -> Option<(super::budget::BudgetClass, i64)> {
        None
    }

    /// Per-message work. `paid_allowed` says whether the budget gate granted this message's
    /// paid call; without it the stage does what is free.
    async fn work(
        &self,
        deps: &Deps,
        ctx: &Self::Context,
        env: &Envelope<Self::Payload>,
        paid_allowed: bool,
    ) -> Result<Self::Work, WorkError>;

    /// Stores a batch (one tenant) with set-based statements; returns each item's next hop.
    async fn persist(
        &self,
        deps: &Deps,
        tx: &dyn Tx,
        tenant: TenantId,
        items: &[StageItem<Self::Payload, Self::Work>],
    ) -> Result<Vec<Vec<Outgoing>>, StageError>;

    /// The run events of one item (usually one; a skipped paid step adds its marker).
    fn describe(&self, item: &StageItem<Self::Payload, Self::Work>) -> Vec<EventInfo>;
}

/// What became of a batch.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Message ids to report as failed (redelivered, then dead-lettered).
    pub failed: Vec<String>,
    pub processed: usize,
    pub duplicates: usize,
    pub sent: usize,
}

/// A parsed message with its id.
type Received<H> = (String, Envelope<<H as StageHandler>::Payload>);
/// A message's work result, its duration, and whether it was granted its paid call.
type WorkResult<H> = (
    String,
    Envelope<<H as StageHandler>::Payload>,
    Result<<H as StageHandler>::Work, WorkError>,
    i32,
    bool,
);

#[derive(Serialize, Deserialize)]
struct Stored {
    next: Vec<Outgoing>,
}

/// Processes one batch with `handler`, with no deadline of its own.
pub async fn process_batch<H: StageHandler>(
    handler: &H,
    deps: &Deps,
    batch: Vec<Incoming>,
) -> BatchOutcome {
    process_batch_until(handler, deps, batch, None).await
}

/// Processes one batch with `handler`; per-message work still running at `deadline` is stopped
/// and the message reported as failed (its reservation released, nothing of it stored).
pub async fn process_batch_until<H: StageHandler>(
    handler: &H,
    deps: &Deps,
    batch: Vec<Incoming>,
    deadline: Option<tokio::time::Instant>,
) -> BatchOutcome {
    let mut out = BatchOutcome::default();
    let mut by_tenant: BTreeMap<TenantId, Vec<Received<H>>> = BTreeMap::new();
    let mut last_tries: HashSet<String> = HashSet::new();
    for m in batch {
        if m.receive_count >= deps.max_receive_count {
            last_tries.insert(m.id.clone());
        }
        match Envelope::<H::Payload>::parse(&m.body) {
            Ok(env) => by_tenant
                .entry(env.tenant_id)
                .or_default()
                .push((m.id, env)),
            Err(e) => {
                tracing::warn!(stage = handler.stage(), message_id = %m.id, error = %e, "unprocessable message; it will go to the DLQ");
                out.failed.push(m.id);
            }
        }
    }
    for (tenant, msgs) in by_tenant {
        let ids: Vec<String> = msgs.iter().map(|(id, _)| id.clone()).collect();
        let batch = TenantBatch {
            tenant,
            last_tries: &last_tries,
            deadline,
        };
        if let Err(e) = process_tenant(handler, deps, &batch, msgs, &mut out).await {
            tracing::error!(stage = handler.stage(), %tenant, error = %e, "batch failed; its messages will be redelivered");
            for id in ids {
                if !out.failed.contains(&id) {
                    out.failed.push(id);
                }
            }
        }
    }
    out
}

/// One tenant's part of a batch, and what bounds it.
#[derive(Clone, Copy)]
struct TenantBatch<'a> {
    tenant: TenantId,
    /// Ids of the messages on their last receive.
    last_tries: &'a HashSet<String>,
    deadline: Option<tokio::time::Instant>,
}

async fn process_tenant<H: StageHandler>(
    handler: &H,
    deps: &Deps,
    batch: &TenantBatch<'_>,
    msgs: Vec<(String, Envelope<H::Payload>)>,
    out: &mut BatchOutcome,
) -> Result<(), StageError> {
    let TenantBatch {
        tenant,
        last_tries,
        deadline,
    } = *batch;
    let stage = handler.stage();
    let client = deps.pool.get().await?;
    // The runs this batch's messages name: a message proves its tenant by naming one the tenant
    // holds; after the batch, any of them whose work has all ended is finalised here.
    let named: Vec<uuid::Uuid> = msgs
        .iter()
        .filter_map(|(_, e)| e.run_id.map(|r| r.as_uuid()))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();

    // 1. What has been done already, and which of the named runs the tenant holds (the
    //    transaction's start travels with these queries).
    let keys: Vec<String> = msgs
        .iter()
        .map(|(_, e)| e.idempotency_key.clone())
        .collect();
    let tx = PipelinedTx::begin(client, tenant);
    let check_params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&stage, &keys];
    let runs_params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&named];
    let check = futures_util::future::join(
        cached::query(
            &tx,
            "SELECT key, status, outcome FROM processed_messages WHERE stage = $1 AND key = ANY($2)",
            &check_params,
        ),
        cached::query(&tx, "SELECT id FROM runs WHERE id = ANY($1)", &runs_params),
    );
    let check = async {
        let (rows, held) = check.await;
        Ok::<_, DbError>((rows?, held?))
    };
    // A load that only reads runs for the whole batch (duplicates included, which costs nothing
    // but rows) in the same round trip as the check — and, for a stage without a budget, the
    // commit. One that writes runs after the check, for the messages not done yet.
    let budgeted = handler.budget(deps).is_some();
    let (rows, loaded, committed) = if handler.load_writes() {
        (check.await?, None, false)
    } else {
        let all: Vec<&Envelope<H::Payload>> = msgs.iter().map(|(_, e)| e).collect();
        let both = futures_util::future::join(check, handler.load(&tx, tenant, &all));
        if budgeted {
            let (rows, ctx) = both.await;
            (rows?, Some(ctx?), false)
        } else {
            let ((rows, ctx), ended) = tx.commit_after(both).await;
            let (rows, ctx) = (rows?, ctx?);
            ended?;
            (rows, Some(ctx), true)
        }
    };
    let (rows, held) = rows;
    let held: HashSet<uuid::Uuid> = held.iter().map(|r| r.get("id")).collect();
    let touched: Vec<uuid::Uuid> = named.into_iter().filter(|r| held.contains(r)).collect();
    let mut done: HashSet<String> = HashSet::new();
    let mut pending: Vec<(String, Vec<Outgoing>)> = Vec::new();
    for r in rows {
        let key: String = r.get(0);
        let status: String = r.get(1);
        if status == "in_progress" {
            let stored: Option<serde_json::Value> = r.get(2);
            let next = stored
                .and_then(|v| serde_json::from_value::<Stored>(v).ok())
                .map(|s| s.next)
                .unwrap_or_default();
            pending.push((key.clone(), next));
        }
        done.insert(key);
    }
    let mut seen = HashSet::new();
    let mut fresh: Vec<(String, Envelope<H::Payload>)> = Vec::new();
    let mut key_to_ids: HashMap<String, Vec<String>> = HashMap::new();
    for (id, env) in msgs {
        let proven = match env.run_id {
            Some(run) => held.contains(&run.as_uuid()),
            None => handler.takes_runless(),
        };
        if !proven {
            // Nothing is written under a tenant the message cannot prove: no idempotency
            // record, no budget, no run event. It is redelivered, then dead-lettered.
            tracing::warn!(stage, message_id = %id, %tenant, "message names a run its tenant does not hold; it will go to the DLQ");
            out.failed.push(id);
            continue;
        }
        key_to_ids
            .entry(env.idempotency_key.clone())
            .or_default()
            .push(id.clone());
        if done.contains(&env.idempotency_key) || !seen.insert(env.idempotency_key.clone()) {
            out.duplicates += 1;
            continue;
        }
        fresh.push((id, env));
    }

    let ctx = match loaded {
        Some(ctx) => ctx,
        None => {
            let envs: Vec<&Envelope<H::Payload>> = fresh.iter().map(|(_, e)| e).collect();
            handler.load(&tx, tenant, &envs).await?
        }
    };

    // 2. Budget for the batch's paid calls, reserved last so the budget row is locked only until
    //    this transaction's commit, never across the vendor calls. The reservation travels with
    //    the commit; on the day's first reservation the row does not exist yet, and a short
    //    transaction of its own creates it and reserves.
    let budget = handler.budget(deps).filter(|_| !fresh.is_empty());
    let units = fresh.len() as i64;
    let reserved = if committed {
        Some(units)
    } else {
        let (reserved, ended) = tx
            .commit_after(async {
                match budget {
                    Some((class, unit_cost)) => {
                        super::budget::try_reserve(&tx, tenant, class, unit_cost, units).await
                    }
                    None => Ok(Some(units)),
                }
            })
            .await;
        let reserved = reserved?;
        ended?;
        reserved
    };
    let mut client = tx.release()?;
    let granted = match (reserved, budget) {
        (Some(granted), _) => granted,
        (None, Some((class, unit_cost))) => {
            super::budget::reserve(
                &mut client,
                tenant,
                class,
                deps.budgets.for_class(class),
                unit_cost,
                units,
            )
            .await?
        }
        (None, None) => units,
    };
    let ctx = &ctx;

    // 3. Work, concurrently, outside any transaction.
    let results: Vec<WorkResult<H>> = futures_util::stream::iter(fresh.into_iter().enumerate())
        .map(|(i, (id, env))| async move {
            let started = Instant::now();
            let paid = (i as i64) < granted;
            let work = handler.work(deps, ctx, &env, paid);
            let r = match deadline {
                Some(at) => tokio::time::timeout_at(at, work).await.unwrap_or_else(|_| {
                    Err(WorkError::Transient(
                        "deadline: the invocation's time ran out before this message's work finished".into(),
                    ))
                }),
                None => work.await,
            };
            (
                id,
                env,
                r,
                started.elapsed().as_millis().min(i32::MAX as u128) as i32,
                paid,
            )
        })
        .buffer_unordered(handler.concurrency().max(1))
        .collect()
        .await;
    let mut items = Vec::new();
    let mut events = Vec::new();
    let mut dead: Vec<DeadWork> = Vec::new();
    let mut failed_paid = 0i64;
    for (id, env, r, duration_ms, paid) in results {
        if r.is_err() && paid {
            failed_paid += 1;
        }
        if let (Err(e), Some(run), true) = (&r, env.run_id, last_tries.contains(&id)) {
            dead.push(DeadWork {
                run,
                key: env.idempotency_key.clone(),
                reason: e.to_string(),
            });
        }
        match r {
            Ok(work) => items.push(StageItem {
                env,
                work,
                duration_ms,
            }),
            Err(e) if env.run_id.is_none() => {
                tracing::warn!(stage, message_id = %id, trace_id = %env.trace_id, error = %e, "message failed");
                out.failed.push(id);
            }
            Err(e) => {
                tracing::warn!(stage, message_id = %id, trace_id = %env.trace_id, error = %e, "message failed");
                events.push(RunEvent {
                    run: env.run_id,
                    stage,
                    entity_id: None,
                    event: "failed".into(),
                    status: "error",
                    error_code: Some(match e {
                        WorkError::Permanent(_) => "permanent".into(),
                        WorkError::Transient(_) => "transient".into(),
                    }),
                    duration_ms: Some(duration_ms),
                    trace_id: env.trace_id.clone(),
                    extra: serde_json::json!({ "error": e.to_string() }),
                });
                out.failed.push(id);
            }
        }
    }

    // 4. Store everything in one transaction.
    let item_vals = items;
    for it in &item_vals {
        for info in handler.describe(it) {
            events.push(RunEvent {
                run: it.env.run_id,
                stage,
                entity_id: info.entity_id,
                event: info.event,
                status: info.status,
                error_code: None,
                duration_ms: (!info.marker).then_some(it.duration_ms),
                trace_id: it.env.trace_id.clone(),
                extra: info.extra,
            });
        }
    }
    let records = deps.sink.drain();
    emit_vendor_metrics(stage, &records);
    let (mine, others): (Vec<_>, Vec<_>) =
        records.into_iter().partition(|r| r.tenant == Some(tenant));
    for r in others {
        crate::vendors::CallSink::record(deps.sink.as_ref(), r);
    }
    let mut spend: BTreeMap<super::budget::BudgetClass, i64> = BTreeMap::new();
    for r in &mine {
        if let Some(class) = super::budget::BudgetClass::of(r.vendor) {
            *spend.entry(class).or_default() += r.cost_micros;
        }
    }
    let spend: Vec<(super::budget::BudgetClass, i64)> = spend.into_iter().collect();
    // Reservations of paid calls whose work failed go back: a vendor outage must not use up
    // the day's budget without spending it (the retry reserves again).
    let unspent = handler
        .budget(deps)
        .map(|(class, unit_cost)| (class, failed_paid * unit_cost));

    let tx = PipelinedTx::begin(client, tenant);
    let next = if item_vals.is_empty() {
        Vec::new()
    } else {
        handler.persist(deps, &tx, tenant, &item_vals).await?
    };
    let claims: Vec<Claim<'_>> = item_vals
        .iter()
        .enumerate()
        .map(|(i, it)| {
            let next = next.get(i).map_or(&[][..], Vec::as_slice);
            let outcome = serde_json::to_value(Stored {
                next: next.to_vec(),
            })
            .map_err(|source| StageError::Encode {
                what: "a message's next hops",
                source,
            })?;
            Ok(Claim {
                key: it.env.idempotency_key.as_str(),
                run: it.env.run_id,
                outcome,
                next,
            })
        })
        .collect::<Result<_, StageError>>()?;
    // The bookkeeping statements do not depend on one another: they are sent together with the
    // commit and answered in one round trip. Each starts its statements when first polled, as
    // `commit_after` requires. Their results are read in order, so the first error returned is
    // the one that made the transaction roll back, not a later "transaction is aborted".
    let (((claimed, logged, used, released, spent), ended), committed) = tx
        .commit_after(futures_util::future::join(
            futures_util::future::join5(
                claim_keys(&tx, tenant, stage, handler.input_queue(), &claims),
                runs::insert_events(&tx, tenant, &events),
                runs::record_vendor_usage(&tx, tenant, &mine),
                async {
                    match unspent {
                        Some((class, micros)) => {
                            super::budget::release(&tx, tenant, class, micros).await
                        }
                        None => Ok(()),
                    }
                },
                super::budget::record_spend(&tx, tenant, &spend),
            ),
            mark_dead(&tx, handler.input_queue(), &dead),
        ))
        .await;
    let inserted = claimed?;
    logged?;
    used?;
    released?;
    spent?;
    ended?;
    committed?;
    let client = tx.release()?;
    out.processed += item_vals.len();

    // 5. Send next hops (new results, and any left pending by an earlier crash), then mark done.
    let mut to_send: Vec<(String, Vec<Outgoing>)> = pending;
    for (i, it) in item_vals.iter().enumerate() {
        if inserted.contains(&it.env.idempotency_key) {
            to_send.push((
                it.env.idempotency_key.clone(),
                next.get(i).cloned().unwrap_or_default(),
            ));
        } else {
            out.duplicates += 1;
        }
    }
    let mut by_queue: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (_, msgs) in &to_send {
        for m in msgs {
            by_queue
                .entry(m.queue.clone())
                .or_default()
                .push(m.body.clone());
        }
    }
    let mut send_failed = false;
    for (queue, bodies) in &by_queue {
        if let Err(e) = deps.bus.send_batch(queue, bodies).await {
            tracing::error!(stage, queue, error = %e, "next hop not sent; will be sent on redelivery");
            send_failed = true;
        } else {
            out.sent += bodies.len();
        }
    }
    if send_failed {
        // Redelivery finds these `in_progress` and sends their stored next hop.
        for (key, _) in &to_send {
            for id in key_to_ids.get(key).into_iter().flatten() {
                if !out.failed.contains(id) {
                    out.failed.push(id.clone());
                }
            }
        }
        return Ok(());
    }
    // The records are done, and any run whose last work this batch ended is finalised: the
    // store transaction has committed, so whichever of two concurrent last batches gets here
    // second sees no pending work and finishes the run.
    let sent_keys: Vec<String> = to_send.into_iter().map(|(k, _)| k).collect();
    if !sent_keys.is_empty() || !touched.is_empty() {
        execute_alone(
            &client,
            tenant,
            "WITH done AS (
                 UPDATE processed_messages SET status = 'done', outcome = NULL, updated_at = now()
                 WHERE tenant_id = $1 AND stage = $2 AND key = ANY($3))
             SELECT finish_runs($4::uuid[])",
            &[&tenant.as_uuid(), &stage, &sent_keys, &touched],
        )
        .await?;
    }
    Ok(())
}

/// Records the batch's keys as `in_progress` with their next hops; returns the keys that were
/// new (a key another delivery recorded first is that delivery's to send). In the same
/// statement, and only for the keys it recorded, the run's count of work moves on: each
/// consumed message's `run_work` row ends and its next hops' rows begin.
async fn claim_keys(
    tx: &dyn Tx,
    tenant: TenantId,
    stage: &str,
    input_queue: &str,
    items: &[Claim<'_>],
) -> Result<HashSet<String>, DbError> {
    if items.is_empty() {
        return Ok(HashSet::new());
    }
    let keys: Vec<&str> = items.iter().map(|i| i.key).collect();
    let runs: Vec<Option<uuid::Uuid>> = items.iter().map(|i| i.run.map(|r| r.as_uuid())).collect();
    let outcomes: Vec<&serde_json::Value> = items.iter().map(|i| &i.outcome).collect();
    let next: Vec<(&str, &Outgoing)> = items
        .iter()
        .flat_map(|i| i.next.iter().map(move |o| (i.key, o)))
        .filter(|(_, o)| o.run.is_some())
        .collect();
    Ok(cached::query(
        tx,
        "WITH claimed AS (
             INSERT INTO processed_messages (tenant_id, stage, key, status, outcome)
             SELECT $1, $2, k, 'in_progress', o FROM UNNEST($3::text[], $4::jsonb[]) AS x(k, o)
             ON CONFLICT (tenant_id, stage, key) DO NOTHING RETURNING key),
         ended AS (
             DELETE FROM run_work w USING claimed c, UNNEST($3::text[], $5::uuid[]) AS m(k, r)
             WHERE c.key = m.k AND w.run_id = m.r AND w.queue = $6 AND w.key = m.k),
         begun AS (
             INSERT INTO run_work (tenant_id, run_id, queue, key)
             SELECT $1, n.r, n.q, n.k
             FROM UNNEST($7::text[], $8::uuid[], $9::text[], $10::text[]) AS n(parent, r, q, k)
             JOIN claimed c ON c.key = n.parent JOIN runs ON runs.id = n.r
             ON CONFLICT DO NOTHING)
         SELECT key FROM claimed",
        &[
            &tenant.as_uuid(),
            &stage,
            &keys,
            &outcomes,
            &runs,
            &input_queue,
            &next.iter().map(|(p, _)| *p).collect::<Vec<_>>(),
            &next
                .iter()
                .map(|(_, o)| o.run.map(|r| r.as_uuid()))
                .collect::<Vec<_>>(),
            &next
                .iter()
                .map(|(_, o)| o.queue.as_str())
                .collect::<Vec<_>>(),
            &next.iter().map(|(_, o)| o.key.as_str()).collect::<Vec<_>>(),
        ],
    )
    .await?
    .iter()
    .map(|r| r.get("key"))
    .collect())
}

/// A processed message as its key is recorded: the run it counts under, its stored outcome
/// (the next hops, for a redelivery to send) and the next hops themselves.
struct Claim<'a> {
    key: &'a str,
    run: Option<RunId>,
    outcome: serde_json::Value,
    next: &'a [Outgoing],
}

/// A message that failed on its last receive, with the error that ended it.
struct DeadWork {
    run: RunId,
    key: String,
    reason: String,
}

/// Marks the run work of messages that failed on their last receive as `dead`, with the error:
/// the queue moves them to its DLQ, and their run ends with a failure instead of waiting.
async fn mark_dead(tx: &dyn Tx, queue: &str, dead: &[DeadWork]) -> Result<(), DbError> {
    cached::execute_if(
        tx,
        !dead.is_empty(),
        "UPDATE run_work w SET state = 'dead', reason = x.why, updated_at = now()
         FROM UNNEST($1::uuid[], $2::text[], $3::text[]) AS x(r, k, why)
         WHERE w.run_id = x.r AND w.queue = $4 AND w.key = x.k",
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

/// The time kept back from per-message work for storing a batch's results: a tenth of the
/// invocation's time left, within these bounds.
pub const MIN_STORE_MARGIN: Duration = Duration::from_secs(2);
pub const MAX_STORE_MARGIN: Duration = Duration::from_secs(20);

/// When an invocation's per-message work must stop: the invocation's deadline (Lambda's
/// `lambda-runtime-deadline-ms`, milliseconds since the epoch; 0 when unknown) less a margin for
/// storing the finished work — a tenth of the time left, at least 2 s and at most 20 s.
pub fn work_deadline(deadline_epoch_ms: u64) -> Option<tokio::time::Instant> {
    if deadline_epoch_ms == 0 {
        return None;
    }
    let deadline = std::time::UNIX_EPOCH + Duration::from_millis(deadline_epoch_ms);
    let left = deadline
        .duration_since(std::time::SystemTime::now())
        .unwrap_or(Duration::ZERO);
    let margin = (left / 10).clamp(MIN_STORE_MARGIN, MAX_STORE_MARGIN);
    Some(tokio::time::Instant::now() + left.saturating_sub(margin))
}

/// The Lambda entry for an SQS-triggered stage: the batch in, partial failures out. Work still
/// running at `deadline` (see [`work_deadline`]) is stopped and its messages reported as failed,
/// so the finished ones are stored before the function's timeout.
pub async fn handle_sqs<H: StageHandler>(
    handler: &H,
    deps: &Deps,
    event: aws_lambda_events::event::sqs::SqsEvent,
    deadline: Option<tokio::time::Instant>,
) -> aws_lambda_events::event::sqs::SqsBatchResponse {
    let mut anonymous = 0usize;
    let batch: Vec<Incoming> = event
        .records
        .into_iter()
        .map(|r| Incoming {
            receive_count: r
                .attributes
                .get("ApproximateReceiveCount")
                .and_then(|n| n.parse().ok())
                .unwrap_or(1),
            id: r.message_id.unwrap_or_else(|| {
                anonymous += 1;
                format!("missing-id-{anonymous}")
            }),
            body: r.body.unwrap_or_default(),
        })
        .collect();
    let outcome = process_batch_until(handler, deps, batch, deadline).await;
    {
        use crate::obs::metrics::{MetricLine, Unit};
        MetricLine::new()
            .dimension("Stage", handler.stage())
            .value("Processed", outcome.processed as f64, Unit::Count)
            .value("Failed", outcome.failed.len() as f64, Unit::Count)
            .value("Duplicates", outcome.duplicates as f64, Unit::Count)
            .value("Sent", outcome.sent as f64, Unit::Count)
            .emit();
    }
    let mut resp = aws_lambda_events::event::sqs::SqsBatchResponse::default();
    for id in outcome.failed {
        let mut f = aws_lambda_events::event::sqs::BatchItemFailure::default();
        f.item_identifier = id;
        resp.batch_item_failures.push(f);
    }
    resp
}

/// One EMF line per vendor called in the batch: calls, errors, rate-limit hits, cost, latency.
fn emit_vendor_metrics(stage: &str, records: &[crate::vendors::CallRecord]) {
    use crate::obs::metrics::{MetricLine, Unit};
    let mut by: BTreeMap<&str, (usize, usize, usize, i64, u64)> = BTreeMap::new();
    for r in records {
        let e = by.entry(r.vendor.as_str()).or_default();
        e.0 += 1;
        e.1 += usize::from(!r.ok);
        e.2 += usize::from(r.rate_limited);
        e.3 += r.cost_micros;
        e.4 += u64::from(r.latency_ms);
    }
    for (vendor, (calls, errors, limited, cost, latency)) in by {
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
