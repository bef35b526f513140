//! One tenant's part of a batch, as its steps: check → load → reserve → work → record spend →
//! store → forward → mark done.

use std::collections::{BTreeMap, HashSet};
use std::time::Instant;

use futures_util::StreamExt;

use super::bookkeeping::{self, Books, DeadWork, Spend};
use super::idempotency::{self, Claim, Found, IdsByKey, Stored};
use super::{BatchOutcome, Outgoing, StageHandler, StageItem, WorkError, WorkResult};
use crate::bus::Envelope;
use crate::db::PipelinedTx;
use crate::domain::TenantId;
use crate::pipeline::runs::RunEvent;
use crate::pipeline::{Deps, StageError};

/// One tenant's part of a batch, and what bounds it.
#[derive(Clone, Copy)]
pub(super) struct TenantBatch<'a> {
    pub(super) tenant: TenantId,
    /// Ids of the messages on their last receive.
    pub(super) last_tries: &'a HashSet<String>,
    /// Whether any of the tenant's messages was received before: its first delivery may have
    /// stopped after recording a domain event and before publishing it.
    pub(super) redelivered: bool,
    /// How the tenant's part of the batch is metered.
    pub(super) metering: &'a super::Metering<'a>,
    pub(super) deadline: Option<tokio::time::Instant>,
}

/// Whether a tenant's part of a batch recorded its compute in its last round trip; a path that
/// stopped before (a failure, a paused vendor, a hop not sent) leaves it to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Metered {
    Yes,
    No,
}

/// A parsed message with its id.
pub(super) type Received<H> = (String, Envelope<<H as StageHandler>::Payload>);

pub(super) async fn process<H: StageHandler>(
    handler: &H,
    deps: &Deps,
    batch: &TenantBatch<'_>,
    msgs: Vec<Received<H>>,
    out: &mut BatchOutcome,
) -> Result<Metered, StageError> {
    let tenant = batch.tenant;
    let tx = PipelinedTx::begin(deps.pool.get().await?, tenant);
    let runs = idempotency::runs_named(msgs.iter().map(|(_, e)| e.run_id));
    let (found, loaded, committed) = check(handler, deps, &tx, tenant, &msgs, &runs).await?;
    let fresh = sort(handler, tenant, msgs, &runs, &found, out);
    let ctx = match loaded {
        Some(ctx) => ctx,
        None => {
            let envs: Vec<&Envelope<H::Payload>> = fresh.msgs.iter().map(|(_, e)| e).collect();
            handler.load(&tx, tenant, &envs).await?
        }
    };
    let (granted, client) = reserve(handler, deps, tx, tenant, fresh.msgs.len(), committed).await?;
    let results = work(handler, deps, &ctx, fresh.msgs, granted, batch.deadline).await;
    let done = settle(results, batch.last_tries, out);
    let client = record_spend(handler, deps, client, tenant, &done).await?;
    let tx = PipelinedTx::begin(client, tenant);
    let (next, inserted) = match store(handler, deps, &tx, tenant, &done).await {
        Ok(stored) => stored,
        Err(e) => {
            give_back_unstored(handler, deps, tenant, &done).await;
            return Err(e);
        }
    };
    let client = tx.release()?;
    out.processed += done.items.len();
    let to_send = to_send(found.pending, &done.items, &next, &inserted, out);
    if !forward(deps, H::STAGE.as_str(), &to_send, &fresh.ids, out).await {
        return Ok(Metered::No);
    }
    let sent: Vec<String> = to_send.into_iter().map(|(k, _)| k).collect();
    // The compute of the tenant's part travels with the last round trip.
    let usage = batch
        .metering
        .usage(deps, H::STAGE.function(), tenant, &out.failed);
    let compute = deps.compute.columns(&usage);
    let finished = idempotency::mark_done(
        &client,
        tenant,
        H::STAGE.as_str(),
        &sent,
        &fresh.runs,
        &compute,
    )
    .await?;
    drop(client);
    if finished || batch.redelivered {
        // After the batch's record: the publish is recorded on its own (once per run).
        let (started, before) = (std::time::Instant::now(), crate::compute::so_far());
        publish_events(deps, tenant).await;
        let usage = crate::compute::Usage {
            tenant: Some(tenant),
            run: None,
            function: H::STAGE.function().to_owned(),
            invocations: 0,
            billed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            memory_mb: deps.compute.memory_mb(H::STAGE.function()),
            requests: crate::compute::so_far() - before,
        };
        deps.compute.add(&deps.pool, vec![usage]).await;
    }
    Ok(Metered::Yes)
}

/// 7. The `RunFinished` a finished run recorded (or any event a stopped delivery left waiting)
///    published. A failure is logged, not returned: the facts are committed, and the alerts
///    function's sweep publishes what is still waiting.
async fn publish_events(deps: &Deps, tenant: TenantId) {
    match deps.publish_events(tenant).await {
        Ok(f) if f.failed > 0 => {
            tracing::warn!(%tenant, failed = f.failed, "domain events not published; the sweep tries again");
        }
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(%tenant, error = %e, "domain events not published; the sweep tries again");
        }
    }
}

/// 1. What has been done already and which of the named runs the tenant holds (the
///    transaction's start travels with these queries). A load that only reads runs for the
///    whole batch (duplicates included, which costs nothing but rows) in the same round trip —
///    and, for a stage without a budget, the commit; one that writes runs later, for the
///    messages not done yet. Returns what was found, the load if it ran, and whether the
///    transaction has ended.
async fn check<H: StageHandler>(
    handler: &H,
    deps: &Deps,
    tx: &PipelinedTx,
    tenant: TenantId,
    msgs: &[Received<H>],
    runs: &[uuid::Uuid],
) -> Result<(Found, Option<H::Context>, bool), StageError> {
    let keys: Vec<String> = msgs
        .iter()
        .map(|(_, e)| e.idempotency_key.clone())
        .collect();
    let check = idempotency::check(tx, H::STAGE.as_str(), &keys, runs);
    if handler.load_writes() {
        return Ok((check.await?, None, false));
    }
    let all: Vec<&Envelope<H::Payload>> = msgs.iter().map(|(_, e)| e).collect();
    let both = futures_util::future::join(check, handler.load(tx, tenant, &all));
    if handler.budget(deps).is_some() {
        let (found, ctx) = both.await;
        return Ok((found?, Some(ctx?), false));
    }
    let ((found, ctx), ended) = tx.commit_after(both).await;
    let (found, ctx) = (found?, ctx?);
    ended?;
    Ok((found, Some(ctx), true))
}

/// The messages to work on, the message ids of each key, and the runs to finish afterwards.
struct Fresh<H: StageHandler> {
    msgs: Vec<Received<H>>,
    ids: IdsByKey,
    runs: Vec<uuid::Uuid>,
}

/// Sorts the batch: a message that cannot prove its tenant fails with nothing written under
/// it (no idempotency record, no budget, no run event; it is redelivered, then dead-lettered);
/// one already done or repeated in the batch is a duplicate; the rest are worked on. A message
/// proves its tenant by naming a run the tenant holds, or, naming none, in a stage that takes
/// runless messages, by the rows its load finds.
fn sort<H: StageHandler>(
    handler: &H,
    tenant: TenantId,
    msgs: Vec<Received<H>>,
    runs: &[uuid::Uuid],
    found: &Found,
    out: &mut BatchOutcome,
) -> Fresh<H> {
    let stage = H::STAGE.as_str();
    let runs = runs
        .iter()
        .copied()
        .filter(|r| found.held.contains(r))
        .collect();
    let mut fresh = Fresh {
        msgs: Vec::new(),
        ids: IdsByKey::new(),
        runs,
    };
    let mut seen = HashSet::new();
    for (id, env) in msgs {
        let proven = match env.run_id {
            Some(run) => found.held.contains(&run.as_uuid()),
            None => handler.takes_runless(),
        };
        if !proven {
            tracing::warn!(stage, message_id = %id, %tenant, "message names a run its tenant does not hold; it will go to the DLQ");
            out.failed.push(id);
            continue;
        }
        fresh
            .ids
            .entry(env.idempotency_key.clone())
            .or_default()
            .push(id.clone());
        if found.done.contains(&env.idempotency_key) || !seen.insert(env.idempotency_key.clone()) {
            out.duplicates += 1;
            continue;
        }
        fresh.msgs.push((id, env));
    }
    fresh
}

/// 2. Budget for the batch's paid calls, reserved last so the budget row is locked only until
///    this transaction's commit, never across the vendor calls. The reservation travels with
///    the commit; on the day's first reservation the row does not exist yet, and a short
///    transaction of its own creates it and reserves. Returns how many messages may make their
///    paid call, and the connection.
async fn reserve<H: StageHandler>(
    handler: &H,
    deps: &Deps,
    tx: PipelinedTx,
    tenant: TenantId,
    fresh: usize,
    committed: bool,
) -> Result<(i64, deadpool_postgres::Client), StageError> {
    let budget = handler.budget(deps).filter(|_| fresh > 0);
    let units = fresh as i64;
    let reserved = if committed {
        Some(units)
    } else {
        let (reserved, ended) = tx
            .commit_after(async {
                match budget {
                    Some((class, unit_cost)) => {
                        crate::pipeline::budget::try_reserve(&tx, tenant, class, unit_cost, units)
                            .await
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
            crate::pipeline::budget::reserve(
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
    Ok((granted, client))
}

/// 3. The per-message work, concurrently, outside any transaction; the first `granted`
///    messages may make their paid call. Work still running at `deadline` is stopped as a
///    transient failure.
async fn work<H: StageHandler>(
    handler: &H,
    deps: &Deps,
    ctx: &H::Context,
    fresh: Vec<Received<H>>,
    granted: i64,
    deadline: Option<tokio::time::Instant>,
) -> Vec<WorkResult<H>> {
    futures_util::stream::iter(fresh.into_iter().enumerate())
        .map(|(i, (id, env))| async move {
            let started = Instant::now();
            let paid = (i as i64) < granted;
            let work = handler.work(deps, ctx, &env, paid);
            let (result, calls) = crate::vendors::recorded(async {
                match deadline {
                    Some(at) => tokio::time::timeout_at(at, work).await.unwrap_or_else(|_| {
                        Err(WorkError::Transient(
                            "deadline: the invocation's time ran out before this message's work finished".into(),
                        ))
                    }),
                    None => work.await,
                }
            })
            .await;
            WorkResult {
                id,
                env,
                result,
                calls,
                duration_ms: started.elapsed().as_millis().min(i32::MAX as u128) as i32,
                paid,
            }
        })
        .buffer_unordered(handler.concurrency().max(1))
        .collect()
        .await
}

/// The work's results, sorted for storing.
struct Done<H: StageHandler> {
    items: Vec<StageItem<H::Payload, H::Work>>,
    /// The run events of the failures (the items' own follow from persisting them).
    events: Vec<RunEvent>,
    dead: Vec<DeadWork>,
    /// Paid calls granted to work that failed (their reservation goes back).
    failed_paid: i64,
    /// Paid calls granted to work that succeeded (their reservation goes back only if the
    /// results are not stored).
    stored_paid: i64,
    /// The vendor calls the work made, failed work's included.
    calls: Vec<crate::vendors::CallRecord>,
}

/// The work's results as items to store, events to log (a runless message's failure is
/// logged, never recorded as a run event), and the run work of messages that died on their
/// last receive; failures are reported.
fn settle<H: StageHandler>(
    results: Vec<WorkResult<H>>,
    last_tries: &HashSet<String>,
    out: &mut BatchOutcome,
) -> Done<H> {
    let stage = H::STAGE.as_str();
    let mut done = Done {
        items: Vec::new(),
        events: Vec::new(),
        dead: Vec::new(),
        failed_paid: 0,
        stored_paid: 0,
        calls: Vec::new(),
    };
    for r in results {
        let WorkResult {
            id,
            env,
            result,
            calls,
            duration_ms,
            paid,
        } = r;
        done.calls.extend(calls);
        match result {
            Ok(work) => {
                done.stored_paid += i64::from(paid);
                done.items.push(StageItem {
                    env,
                    work,
                    duration_ms,
                });
            }
            Err(e) => {
                tracing::warn!(stage, message_id = %id, trace_id = %env.trace_id, error = %e, "message failed");
                done.failed_paid += i64::from(paid);
                if let Some(run) = env.run_id {
                    if last_tries.contains(&id) {
                        done.dead.push(DeadWork {
                            run,
                            key: env.idempotency_key.clone(),
                            reason: e.to_string(),
                        });
                    }
                    done.events
                        .push(bookkeeping::failure_event(stage, &env, &e, duration_ms));
                }
                out.failed.push(id);
            }
        }
    }
    done
}

/// The run events of the stored items, given the next hops persisting chose for each.
fn item_events<H: StageHandler>(
    handler: &H,
    items: &[StageItem<H::Payload, H::Work>],
    next: &[Vec<Outgoing>],
) -> Vec<RunEvent> {
    let mut events = Vec::new();
    for (i, it) in items.iter().enumerate() {
        let hops = next.get(i).map_or(&[][..], Vec::as_slice);
        for info in handler.describe(it, hops) {
            events.push(RunEvent {
                run: it.env.run_id,
                stage: H::STAGE.as_str(),
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
    events
}

/// 4. Records what the work spent in a transaction of its own, before the results: a paid call
///    is in the ledger and the budget exactly once whether the results are stored or not (a
///    failed store, or a process killed before its commit, leaves the spend recorded; the
///    redelivery's calls are new calls). Nothing is sent for a batch that made no calls.
async fn record_spend<H: StageHandler>(
    handler: &H,
    deps: &Deps,
    client: deadpool_postgres::Client,
    tenant: TenantId,
    done: &Done<H>,
) -> Result<deadpool_postgres::Client, StageError> {
    let spend = Spend {
        tenant,
        calls: &done.calls,
        unspent: handler
            .budget(deps)
            .map(|(class, unit_cost)| (class, done.failed_paid * unit_cost)),
    };
    bookkeeping::emit_vendor_metrics(H::STAGE.as_str(), &done.calls);
    if spend.is_empty() {
        return Ok(client);
    }
    let tx = PipelinedTx::begin(client, tenant);
    let (written, committed) = tx.commit_after(bookkeeping::write_spend(&tx, &spend)).await;
    written?;
    committed?;
    Ok(tx.release()?)
}

/// After a failed store, gives back the reservation of the paid calls whose results were not
/// stored: their messages come back and reserve again. Best effort on a connection of its
/// own (the store's may be broken); a reservation left behind only holds budget until the
/// day ends, and the store's error is the one reported.
async fn give_back_unstored<H: StageHandler>(
    handler: &H,
    deps: &Deps,
    tenant: TenantId,
    done: &Done<H>,
) {
    let Some((class, unit_cost)) = handler.budget(deps) else {
        return;
    };
    let micros = done.stored_paid * unit_cost;
    if micros <= 0 {
        return;
    }
    let released = async {
        let tx = PipelinedTx::begin(deps.pool.get().await?, tenant);
        let (released, committed) = tx
            .commit_after(crate::pipeline::budget::release(&tx, tenant, class, micros))
            .await;
        released?;
        committed
    };
    if let Err(e) = released.await {
        tracing::warn!(stage = H::STAGE.as_str(), %tenant, error = %e, "the reservation of a batch that was not stored was not given back");
    }
}

/// 5. Stores the results (set-based statements, the transaction's start travelling with the
///    first), then claims their keys and writes the books, sent together with the commit.
///    Returns each item's next hops and the keys this delivery claimed.
async fn store<H: StageHandler>(
    handler: &H,
    deps: &Deps,
    tx: &PipelinedTx,
    tenant: TenantId,
    done: &Done<H>,
) -> Result<(Vec<Vec<Outgoing>>, HashSet<String>), StageError> {
    let stage = H::STAGE.as_str();
    let next = if done.items.is_empty() {
        Vec::new()
    } else {
        handler.persist(deps, tx, tenant, &done.items).await?
    };
    let claims = done
        .items
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
        .collect::<Result<Vec<_>, StageError>>()?;
    let mut events = item_events(handler, &done.items, &next);
    events.extend(done.events.iter().cloned());
    let books = Books {
        tenant,
        input_queue: H::INPUT.name(),
        events: &events,
        dead: &done.dead,
    };
    let ((claimed, written), committed) = tx
        .commit_after(futures_util::future::join(
            idempotency::claim(tx, tenant, stage, H::INPUT.name(), &claims),
            bookkeeping::write(tx, &books),
        ))
        .await;
    let claimed = claimed?;
    written?;
    committed?;
    Ok((next, claimed))
}

/// The next hops to send: those of results this delivery claimed (a key another delivery
/// claimed first is that one's to send, and counts as a duplicate here), and any left pending
/// by an earlier crash.
fn to_send<P, W>(
    pending: Vec<(String, Vec<Outgoing>)>,
    items: &[StageItem<P, W>],
    next: &[Vec<Outgoing>],
    claimed: &HashSet<String>,
    out: &mut BatchOutcome,
) -> Vec<(String, Vec<Outgoing>)> {
    let mut to_send = pending;
    for (i, it) in items.iter().enumerate() {
        if claimed.contains(&it.env.idempotency_key) {
            to_send.push((
                it.env.idempotency_key.clone(),
                next.get(i).cloned().unwrap_or_default(),
            ));
        } else {
            out.duplicates += 1;
        }
    }
    to_send
}

/// 6. Sends the next hops in batches per queue. If any send fails, the messages whose hops were
///    not all sent are reported failed: their redelivery finds them `in_progress` and sends the
///    stored hops. Returns whether everything was sent.
async fn forward(
    deps: &Deps,
    stage: &str,
    to_send: &[(String, Vec<Outgoing>)],
    ids: &IdsByKey,
    out: &mut BatchOutcome,
) -> bool {
    let mut by_queue: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (_, msgs) in to_send {
        for m in msgs {
            by_queue.entry(&m.queue).or_default().push(m.body.clone());
        }
    }
    let mut all_sent = true;
    for (queue, bodies) in &by_queue {
        if let Err(e) = deps.bus.send_batch(queue, bodies).await {
            tracing::error!(stage, queue, error = %e, "next hop not sent; will be sent on redelivery");
            all_sent = false;
        } else {
            out.sent += bodies.len();
        }
    }
    if !all_sent {
        for (key, _) in to_send {
            for id in ids.get(key).into_iter().flatten() {
                if !out.failed.contains(id) {
                    out.failed.push(id.clone());
                }
            }
        }
    }
    all_sent
}
