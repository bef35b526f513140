//! The driver: every stage pumped in a loop until every queue is empty, with flow control,
//! as Lambda's event source mappings would deliver the batches.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::future::join_all;
use shared::bus::{Delivery, MAX_BATCH_ENTRIES, Queue};
use shared::db::{DbError, begin_tenant};
use shared::domain::RunId;
use shared::pipeline::{AnyStage, Incoming};

use super::{FunnelActivity, LocalError, LocalPipeline, NoProgress, Progress, simulate_recipients};

impl LocalPipeline {
    /// Visible messages on a stage's next queue above which the stage is not pumped: two rounds
    /// of the next stage's batches.
    fn high_water(&self) -> u64 {
        (2 * self.parallel * MAX_BATCH_ENTRIES) as u64
    }

    /// Processes up to `parallel` batches from `queue` with `handler`; acknowledges successes and
    /// releases failures for redelivery (the bus dead-letters them after `maxReceiveCount`).
    async fn pump(
        &self,
        handler: &dyn AnyStage,
        progress: &dyn Progress,
        counts: &mut (usize, usize),
    ) -> Result<bool, LocalError> {
        // Flow control: a stage whose next queue already holds two rounds of work waits for it
        // to drain, so the backlog held in memory (SQS's, in production) is bounded by the
        // driver's parallelism, not by the run's size. The most downstream stage with work
        // always runs, so the drain cannot stall.
        let queue = handler.input();
        for next in handler.sends_to().iter().filter(|q| **q != queue) {
            if self.deps.bus.depth(next.name()).await?.visible >= self.high_water() {
                return Ok(false);
            }
        }
        let mut batches: Vec<Vec<Delivery>> = Vec::new();
        for _ in 0..self.parallel {
            let b = self
                .deps
                .bus
                .receive(queue.name(), MAX_BATCH_ENTRIES)
                .await?;
            if b.is_empty() {
                break;
            }
            batches.push(b);
        }
        if batches.is_empty() {
            return Ok(false);
        }
        let outcomes = join_all(batches.iter().map(|b| {
            let incoming = b
                .iter()
                .map(|d| Incoming {
                    id: d.message_id.clone(),
                    body: d.body.clone(),
                    receive_count: d.receive_count,
                })
                .collect();
            handler.process(&self.deps, incoming)
        }))
        .await;
        for (batch, outcome) in batches.iter().zip(outcomes) {
            for d in batch {
                if outcome.failed.contains(&d.message_id) {
                    counts.1 += 1;
                    self.deps
                        .bus
                        .change_visibility(queue.name(), &d.receipt, Duration::ZERO)
                        .await?;
                } else {
                    counts.0 += 1;
                    self.deps.bus.delete(queue.name(), &d.receipt).await?;
                }
            }
        }
        progress.stage(handler.stage().as_str(), counts.0, counts.1);
        Ok(true)
    }

    /// Pumps every stage until every queue is empty (in flight included).
    async fn drain(
        &self,
        progress: &dyn Progress,
        counts: &mut HashMap<&'static str, (usize, usize)>,
    ) -> Result<(), LocalError> {
        loop {
            let mut busy = false;
            for stage in self.stages.all() {
                let n = counts.entry(stage.stage().as_str()).or_default();
                busy |= self.pump(stage, progress, n).await?;
            }
            if !busy {
                let mut in_flight = 0;
                for q in Queue::ALL {
                    let d = self.deps.bus.depth(q.name()).await?;
                    in_flight += d.visible + d.in_flight;
                }
                if in_flight == 0 {
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    /// Processes whatever is on the queues until they are empty (messages put there by hand,
    /// a released backlog).
    pub async fn settle(&self) -> Result<(), LocalError> {
        self.drain(&NoProgress, &mut HashMap::new()).await
    }

    /// Targeting, then every stage through delivery until all queues are empty. The functions
    /// finish the run themselves (the batch that ends its last message); a run still `running`
    /// once every queue is empty means a loop did not close, and is an error here.
    pub async fn run(&self, progress: &dyn Progress) -> Result<RunId, LocalError> {
        let report = targeting::handler(
            &self.deps,
            serde_json::json!({ "detail": { "kind": "local" } }),
        )
        .await?;
        progress.stage("targeting", report.jobs_sent, 0);
        let run = report.runs.first().copied().ok_or(LocalError::NoRun)?;
        let mut counts = HashMap::new();
        self.drain(progress, &mut counts).await?;
        let status = self.run_status(run).await?;
        if status == "running" {
            return Err(LocalError::Unfinished(run));
        }
        Ok(run)
    }

    /// A run's status as the functions left it.
    pub async fn run_status(&self, run: RunId) -> Result<String, DbError> {
        let mut c = self.deps.pool.get().await?;
        let tx = begin_tenant(&mut c, self.tenant).await?;
        let row = tx
            .query_one("SELECT status FROM runs WHERE id = $1", &[&run.as_uuid()])
            .await?;
        tx.commit().await?;
        Ok(row.get("status"))
    }

    /// The recipients' side, simulated against the real handlers ([`simulate_recipients`]),
    /// then every queue drained (fulfilment emails go out).
    pub async fn simulate_recipients(
        &self,
        progress: &dyn Progress,
    ) -> Result<FunnelActivity, LocalError> {
        let activity = simulate_recipients(
            &self.sim.base_url(),
            &self.gateway_url,
            &self.deps.pool,
            self.tenant,
            self.buy_share,
            progress,
        )
        .await?;
        let mut counts = HashMap::new();
        self.drain(progress, &mut counts).await?;
        Ok(activity)
    }
}
