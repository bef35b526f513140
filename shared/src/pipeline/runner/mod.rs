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
//! 4. if the work called vendors, one pipelined transaction records what it spent (vendor usage,
//!    the cost ledger, spend against the budget, the reservation of failed work given back) —
//!    committed before the results, so every paid call is recorded exactly once whatever
//!    becomes of them;
//! 5. one transaction stores the results with set-based statements (its start travelling with the
//!    first), then the idempotency records (with the next-hop messages as their outcome) and the
//!    run events, sent together with the commit (pipelined) as they do not depend on one
//!    another; if it fails, the reservation of the work it would have stored is given back;
//! 6. the next hop is sent in batches and the records marked done (one pipelined round trip);
//! 7. if that finished a run (or the batch holds a redelivery), the tenant's waiting domain
//!    events (`RunFinished`) are published.
//!
//! Round trips per batch are constant, whatever its size. Unparseable messages, messages that
//! cannot prove their tenant (step 1 also reads which of the runs they name the tenant holds)
//! and failed work are reported as failures, so SQS redelivers them and finally moves them to
//! the DLQ.
//!
//! `tenant` holds the steps, `idempotency` every statement on `processed_messages`, and
//! `bookkeeping` the run events, vendor usage, ledger, spend and dead run work.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{Deps, StageError};
use crate::bus::{Envelope, Queue};
use crate::db::{DbError, Tx};
use crate::domain::{RunId, TenantId};

mod bookkeeping;
mod idempotency;
mod tenant;

use tenant::{Received, TenantBatch};

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
    pub fn new<P: Serialize>(queue: Queue, env: &Envelope<P>) -> Result<Self, StageError> {
        Ok(Self {
            queue: queue.name().to_owned(),
            body: env.to_body()?,
            run: env.run_id,
            key: env.idempotency_key.clone(),
        })
    }

    /// The same lead handed on to `queue`: same payload, key, tenant, run and trace.
    pub fn forward<P: Serialize + Clone>(
        env: &Envelope<P>,
        queue: Queue,
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

    /// The stage's name.
    const STAGE: super::Stage;

    /// The queue this stage consumes: the one its messages wait on while their run counts them.
    const INPUT: Queue;

    /// The only queues this stage may send to (its function's `SENDS_TO`, which the template
    /// grants).
    const SENDS_TO: &'static [Queue];

    /// The vendors its work calls: while one is paused for the batch's tenant
    /// ([`crate::vendors::pauses`]), the batch waits on its queue.
    const VENDORS: &'static [crate::vendors::Vendor] = &[];

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

    /// The run events of one stored item (usually one; a skipped paid step adds its marker),
    /// given the next hops `persist` chose for it: an event never says an item went on when
    /// persisting kept it back.
    fn describe(
        &self,
        item: &StageItem<Self::Payload, Self::Work>,
        next: &[Outgoing],
    ) -> Vec<EventInfo>;
}

/// A stage behind one object type, so a driver holds every stage in one list (the local run,
/// the template test, the bench). Every [`StageHandler`] is one.
#[async_trait]
pub trait AnyStage: Send + Sync {
    fn stage(&self) -> super::Stage;
    fn input(&self) -> Queue;
    fn sends_to(&self) -> &'static [Queue];
    fn concurrency(&self) -> usize;
    fn worst_case_work(&self, vendors: &crate::vendors::config::VendorsConfig) -> Duration;
    /// [`process_batch`] with this stage.
    async fn process(&self, deps: &Deps, batch: Vec<Incoming>) -> BatchOutcome;
}

#[async_trait]
impl<H: StageHandler> AnyStage for H {
    fn stage(&self) -> super::Stage {
        H::STAGE
    }

    fn input(&self) -> Queue {
        H::INPUT
    }

    fn sends_to(&self) -> &'static [Queue] {
        H::SENDS_TO
    }

    fn concurrency(&self) -> usize {
        StageHandler::concurrency(self)
    }

    fn worst_case_work(&self, vendors: &crate::vendors::config::VendorsConfig) -> Duration {
        StageHandler::worst_case_work(self, vendors)
    }

    async fn process(&self, deps: &Deps, batch: Vec<Incoming>) -> BatchOutcome {
        process_batch(self, deps, batch).await
    }
}

/// What became of a batch.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Message ids to report as failed (redelivered, then dead-lettered).
    pub failed: Vec<String>,
    pub processed: usize,
    pub duplicates: usize,
    pub sent: usize,
    /// Messages put back on the stage's queue, delayed, because a vendor their work calls is
    /// paused (acknowledged here: the copy waits).
    pub waiting: usize,
}

/// What one message's work came to: its result, the vendor calls it made (paid whether the
/// work succeeded or not), how long it took, and whether it was granted its paid call.
struct WorkResult<H: StageHandler> {
    id: String,
    env: Envelope<H::Payload>,
    result: Result<H::Work, WorkError>,
    calls: Vec<crate::vendors::CallRecord>,
    duration_ms: i32,
    paid: bool,
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
    // The scope in which the batch's SQS, S3 and event requests are counted.
    let (out, _, _) =
        crate::compute::metered(process_tenants(handler, deps, batch, deadline)).await;
    out
}

/// One tenant's part of a batch, as its compute is recorded: from when its processing began,
/// with the requests counted by then, over the messages it claims (id and run). The first
/// tenant of a batch also carries the invocation and the event source's own two SQS requests
/// (Lambda's receive of the batch and delete of what succeeded).
pub(super) struct Metering<'a> {
    pub(super) started: std::time::Instant,
    pub(super) requests_before: crate::compute::Requests,
    pub(super) claimed: &'a [(String, Option<crate::domain::RunId>)],
    pub(super) first: bool,
}

impl Metering<'_> {
    /// The usage so far, per run: only work a message completed is its tenant's; a failed
    /// message (one that could not prove its tenant among them) is the platform's, so nothing
    /// is written under a tenant no message proved.
    pub(super) fn usage(
        &self,
        deps: &Deps,
        function: &str,
        tenant: TenantId,
        failed: &[String],
    ) -> Vec<crate::compute::Usage> {
        let mut shares = BTreeMap::new();
        for (id, run) in self.claimed {
            let key = if failed.contains(id) {
                (None, None)
            } else {
                (Some(tenant), *run)
            };
            *shares.entry(key).or_default() += 1usize;
        }
        let requests = crate::compute::so_far() - self.requests_before;
        let mut usage = deps.compute.invocation(
            function,
            self.started.elapsed(),
            requests,
            if self.first { 2 } else { 0 },
            &shares,
        );
        if !self.first {
            for u in &mut usage {
                u.invocations = 0;
            }
        }
        usage
    }
}

async fn process_tenants<H: StageHandler>(
    handler: &H,
    deps: &Deps,
    batch: Vec<Incoming>,
    deadline: Option<tokio::time::Instant>,
) -> BatchOutcome {
    let mut out = BatchOutcome::default();
    let mut by_tenant: BTreeMap<TenantId, Vec<Received<H>>> = BTreeMap::new();
    let mut last_tries: HashSet<String> = HashSet::new();
    let mut redelivered: HashSet<String> = HashSet::new();
    for m in batch {
        if m.receive_count >= deps.max_receive_count {
            last_tries.insert(m.id.clone());
        }
        if m.receive_count > 1 {
            redelivered.insert(m.id.clone());
        }
        match Envelope::<H::Payload>::parse(&m.body) {
            Ok(env) => by_tenant
                .entry(env.tenant_id)
                .or_default()
                .push((m.id, env)),
            Err(e) => {
                tracing::warn!(stage = H::STAGE.as_str(), message_id = %m.id, error = %e, "unprocessable message; it will go to the DLQ");
                out.failed.push(m.id);
            }
        }
    }
    for (i, (tenant, msgs)) in by_tenant.into_iter().enumerate() {
        let claimed: Vec<(String, Option<crate::domain::RunId>)> = msgs
            .iter()
            .map(|(id, env)| (id.clone(), env.run_id))
            .collect();
        let metering = Metering {
            started: std::time::Instant::now(),
            requests_before: crate::compute::so_far(),
            claimed: &claimed,
            first: i == 0,
        };
        let ids: Vec<String> = msgs.iter().map(|(id, _)| id.clone()).collect();
        let batch = TenantBatch {
            tenant,
            last_tries: &last_tries,
            redelivered: ids.iter().any(|id| redelivered.contains(id)),
            deadline,
            metering: &metering,
        };
        let result = match deps.pauses.blocking(&deps.pool, tenant, H::VENDORS).await {
            Ok(None) => tenant::process(handler, deps, &batch, msgs, &mut out).await,
            Ok(Some(pause)) => wait_out::<H>(deps, &pause, msgs, &mut out)
                .await
                .map(|()| tenant::Metered::No),
            Err(e) => Err(e.into()),
        };
        let metered = match result {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(stage = H::STAGE.as_str(), %tenant, error = %e, "batch failed; its messages will be redelivered");
                for id in ids {
                    if !out.failed.contains(&id) {
                        out.failed.push(id);
                    }
                }
                tenant::Metered::No
            }
        };
        // A path that did not reach the batch's last round trip records its compute alone.
        if metered == tenant::Metered::No {
            let usage = metering.usage(deps, H::STAGE.function(), tenant, &out.failed);
            deps.compute.add(&deps.pool, usage).await;
        }
    }
    out
}

/// 0. A vendor the stage calls is paused for this tenant: the messages go back on the stage's
///    queue, delayed until the pause ends (or is looked at again), and these are acknowledged —
///    so they wait however long the pause lasts, reserve no budget, and their receive count,
///    which would dead-letter them, starts again. A copy sent twice (a crash before the
///    acknowledgement) is a duplicate its idempotency key catches.
async fn wait_out<H: StageHandler>(
    deps: &Deps,
    pause: &crate::vendors::pauses::VendorPause,
    msgs: Vec<Received<H>>,
    out: &mut BatchOutcome,
) -> Result<(), StageError> {
    let bodies = msgs
        .iter()
        .map(|(_, env)| env.to_body())
        .collect::<Result<Vec<_>, _>>()?;
    let wait = pause.wait(chrono::Utc::now());
    deps.bus
        .send_delayed(H::INPUT.name(), &bodies, wait)
        .await?;
    tracing::info!(stage = H::STAGE.as_str(), vendor = %pause.vendor, reason = %pause.reason, messages = bodies.len(), wait_s = wait.as_secs(), "vendor paused; the batch waits on its queue");
    out.waiting += bodies.len();
    Ok(())
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
            .dimension("Stage", H::STAGE.as_str())
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

/// What an SQS-triggered function's `main` runs: it reads its settings (the secrets in
/// `LF_SECRET_ARNS` over the environment), builds its dependencies (every queue in `sends_to`
/// required) and its stage with `make`, then serves SQS batches until the runtime stops it. A
/// start that fails names what was wrong (Lambda shows it as the init error).
pub async fn serve_stage<H: StageHandler>(
    sends_to: &[Queue],
    make: impl FnOnce(&Deps, &dyn crate::config::Source) -> Result<H, crate::lambda::StartError>,
) -> Result<(), lambda_runtime::Error> {
    crate::obs::init_tracing();
    let source = crate::secrets::from_env().await?;
    let deps = Deps::from_source(&source, sends_to)?;
    let stage = make(&deps, &source)?;
    let (stage, deps) = (&stage, &deps);
    lambda_runtime::run(lambda_runtime::service_fn(
        |event: lambda_runtime::LambdaEvent<aws_lambda_events::event::sqs::SqsEvent>| async move {
            let deadline = work_deadline(event.context.deadline);
            Ok::<_, lambda_runtime::Error>(handle_sqs(stage, deps, event.payload, deadline).await)
        },
    ))
    .await
}
