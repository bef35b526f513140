//! The local pipeline: the real stage handlers on embedded defaults — PostgreSQL, the vendor
//! simulator in-process, a local object store and the in-process bus (or any `Bus`) — pumped
//! until every queue is drained. `leadfactory run` and the end-to-end tests both use it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use secrecy::SecretString;
use shared::bus::{Bus, Delivery, MAX_BATCH_ENTRIES, MemoryBus, Queue, QueueSpec};
use shared::db::{DbError, Pool, begin_tenant};
use shared::domain::{RunId, TenantId};
use shared::pipeline::budget::BudgetLimits;
use shared::pipeline::{AnyStage, Deps, FetchPolicy, Incoming};

pub use crate::stages::Stages;
use shared::store::LocalStore;
use shared::vendors::HttpPolicy;
use shared::vendors::config::VendorsConfig;
use sim::{SimConfig, Simulator};

/// The tenant the local run works as.
pub const LOCAL_TENANT: &str = "00000000-0000-4000-8000-00000000000a";

/// Progress reporting, so the CLI can draw bars and tests can stay quiet.
pub trait Progress: Send + Sync {
    fn stage(&self, stage: &str, processed: usize, failed: usize);
}

pub struct NoProgress;
impl Progress for NoProgress {
    fn stage(&self, _: &str, _: usize, _: usize) {}
}

#[derive(Debug, Clone)]
pub struct LocalOptions {
    /// Application-role URL (RLS applies).
    pub database_url: SecretString,
    pub store_dir: PathBuf,
    pub sim: SimConfig,
    pub visibility_timeout: Duration,
    pub max_receive_count: u32,
    /// Batches processed at once per stage.
    pub parallel_batches: usize,
    pub budgets: BudgetLimits,
    pub policy: HttpPolicy,
    /// Share of clicking recipients who buy the full report in the simulated funnel.
    pub buy_share: f64,
    /// Delivery's warm-up and link settings.
    pub delivery: delivery::Settings,
    /// Serve the simulator from its own runtime with this many threads (benchmarks, so that
    /// its CPU can be subtracted); `None` shares the caller's runtime.
    pub sim_threads: Option<usize>,
    /// Variables over the local defaults, as a deployment's environment sets them (vendor URLs,
    /// timeouts, rates; tests point a vendor at an address nothing listens on).
    pub env: HashMap<String, String>,
}

impl LocalOptions {
    pub fn new(database_url: SecretString, store_dir: PathBuf) -> Self {
        Self {
            database_url,
            store_dir,
            sim: SimConfig::default(),
            visibility_timeout: Duration::from_secs(30),
            max_receive_count: 3,
            parallel_batches: 4,
            budgets: BudgetLimits::default(),
            policy: HttpPolicy {
                base_backoff: Duration::from_millis(50),
                max_backoff: Duration::from_secs(2),
                ..HttpPolicy::default()
            },
            buy_share: 0.5,
            delivery: delivery::Settings::default(),
            sim_threads: None,
            env: HashMap::new(),
        }
    }
}

/// Makes freed multi-megabyte buffers go back to the operating system at once, so a long local
/// run's memory stays flat with its size. The in-process simulator serves pages of up to 6 MB;
/// glibc's dynamic mmap threshold would otherwise rise to that size and keep such buffers in its
/// arenas after they are freed (3,000 leads, when the fetch still held whole pages: 184 MB peak
/// instead of 88 MB). Call once, first thing in `main`.
pub fn return_freed_buffers_to_the_os() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a tuning parameter of glibc's allocator; it takes no pointers.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

/// The in-process bus with every hop's queue and its DLQ.
pub fn memory_bus(visibility: Duration, max_receive_count: u32) -> MemoryBus {
    MemoryBus::new(
        Queue::ALL
            .iter()
            .flat_map(|q| QueueSpec::with_dlq(q.name(), visibility, max_receive_count)),
    )
}

/// The local run's link secret (signed unsubscribe and download links); production reads
/// `LF_LINK_SECRET`.
pub const LOCAL_LINK_SECRET: &str = "leadfactory-local-link-secret-not-for-production";

/// Aborts the gateway task when the pipeline goes.
struct Task(tokio::task::JoinHandle<()>);
impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub struct LocalPipeline {
    pub deps: Deps,
    pub sim: Simulator,
    pub stages: Stages,
    pub tenant: TenantId,
    /// The local API Gateway: storefront and webhooks (the emails' links point here).
    pub gateway_url: String,
    pub links: shared::links::LinkSigner,
    parallel: usize,
    buy_share: f64,
    _gateway: Task,
}

#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("I/O: {0}")]
    Sim(std::io::Error),
    #[error(transparent)]
    Config(#[from] shared::config::ConfigError),
    #[error(transparent)]
    Vendor(#[from] shared::vendors::VendorError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("object store: {0}")]
    Store(#[from] shared::store::StoreError),
    #[error("targeting began no run (no active campaign)")]
    NoRun,
    #[error(transparent)]
    Bus(#[from] shared::bus::BusError),
    #[error(transparent)]
    Stage(#[from] shared::pipeline::StageError),
    #[error(transparent)]
    Domain(#[from] shared::domain::DomainError),
    #[error("local gateway: {0}")]
    Gateway(String),
    #[error(transparent)]
    Start(#[from] shared::lambda::StartError),
    #[error("run {0} is still running with every queue empty: its completion was never counted")]
    Unfinished(RunId),
}

impl LocalPipeline {
    /// Starts the simulator and wires the stages to it, the database, the store and `bus`.
    pub async fn start(opts: LocalOptions, bus: Arc<dyn Bus>) -> Result<Self, LocalError> {
        let sim = match opts.sim_threads {
            Some(n) => Simulator::start_on_own_runtime(opts.sim.clone(), n),
            None => Simulator::start_local(opts.sim.clone()).await,
        }
        .map_err(LocalError::Sim)?;
        let base = sim.base_url();
        let (listener, gateway_addr) = crate::gateway::bind().await.map_err(LocalError::Sim)?;
        let gateway_url = format!("http://{gateway_addr}");
        let c = &opts.sim;
        let mut env: HashMap<String, String> = [
            ("LF_YELP_URL", base.clone()),
            ("LF_PLACES_URL", base.clone()),
            ("LF_PAGESPEED_URL", base.clone()),
            ("LF_OPENAI_URL", base.clone()),
            ("LF_SENDGRID_URL", base.clone()),
            ("LF_STRIPE_URL", base.clone()),
            ("YELP_API_KEY", c.yelp_key.clone()),
            ("GOOGLE_PLACES_API_KEY", c.google_key.clone()),
            ("GOOGLE_PAGESPEED_API_KEY", c.google_key.clone()),
            ("OPENAI_API_KEY", c.openai_key.clone()),
            ("SENDGRID_API_KEY", c.sendgrid_key.clone()),
            ("STRIPE_SECRET_KEY", c.stripe_key.clone()),
            ("SLACK_WEBHOOK_URL", format!("{base}{}", c.slack_path)),
            // Local vendors answer fast: allow more calls per second than the real ones do.
            ("LF_YELP_RPS", "50".into()),
            ("LF_PLACES_RPS", "100".into()),
            ("LF_PAGESPEED_RPS", "100".into()),
            ("LF_OPENAI_RPS", "100".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        env.extend(opts.env.clone());
        let vendors = VendorsConfig::load(&env)?;
        let deps = Deps {
            mode: shared::config::Mode::Development,
            pool: shared::db::connect(&opts.database_url, 8)?,
            bus,
            store: Arc::new(LocalStore::new(&opts.store_dir)),
            vendors,
            policy: opts.policy.clone(),
            budgets: opts.budgets.clone(),
            fetch: FetchPolicy::development(),
            public_base_url: gateway_url.clone(),
            max_receive_count: opts.max_receive_count,
        };
        let links = shared::links::LinkSigner::new(SecretString::from(LOCAL_LINK_SECRET))
            .map_err(|e| LocalError::Gateway(e.to_string()))?;
        let mailer = Arc::new(delivery::Mailer::new(
            deps.vendors.sendgrid(&deps.policy)?,
            links.clone(),
            opts.delivery.clone(),
            &gateway_url,
        ));
        let stages = Stages::new(&deps, &env, mailer)?;
        let sendgrid_key = sim
            .sendgrid_public_key()
            .and_then(|k| shared::webhook::sendgrid::SendGridKey::from_base64_der(&k))
            .map_err(|e| LocalError::Gateway(e.to_string()))?;
        let functions = crate::gateway::Functions {
            storefront: storefront::StorefrontDeps::new(
                deps.pool.clone(),
                deps.store.clone(),
                &deps.vendors,
                &deps.policy,
                links.clone(),
                &gateway_url,
            )
            .map_err(|e| LocalError::Gateway(e.to_string()))?,
            sendgrid: sendgrid_webhook::WebhookDeps {
                pool: deps.pool.clone(),
                key: sendgrid_key,
                tolerance_secs: shared::webhook::sendgrid::DEFAULT_TOLERANCE_SECS,
            },
            stripe: stripe_webhook::WebhookDeps {
                pool: deps.pool.clone(),
                bus: deps.bus.clone(),
                secret: SecretString::from(opts.sim.stripe_webhook_secret.clone()),
                tolerance_secs: shared::webhook::stripe::DEFAULT_TOLERANCE_SECS,
            },
            ops: ops_api::OpsApi {
                pool: deps.pool.clone(),
                bus: deps.bus.clone(),
                store: deps.store.clone(),
                queues: ops_api::wired_queues(),
            },
        };
        let gateway = crate::gateway::serve(listener, Arc::new(functions));
        Ok(Self {
            deps,
            sim,
            stages,
            tenant: TenantId::parse(LOCAL_TENANT)?,
            gateway_url,
            links,
            parallel: opts.parallel_batches.max(1),
            buy_share: opts.buy_share,
            _gateway: Task(gateway),
        })
    }

    /// Creates the local tenant if missing.
    pub async fn ensure_tenant(&self, name: &str) -> Result<(), DbError> {
        let mut c = self.deps.pool.get().await?;
        let tx = begin_tenant(&mut c, self.tenant).await?;
        tx.execute(
            "INSERT INTO tenants (id, name) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING",
            &[&self.tenant.as_uuid(), &name],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

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

    pub fn pool(&self) -> &Pool {
        &self.deps.pool
    }
}

/// The recipients' side, simulated against the real handlers: SendGrid posts signed events
/// for every sent email to the local webhook (twice, as SendGrid retries); a share of the
/// recipients who clicked open their report page and buy through the storefront; Stripe
/// posts the signed completion (twice) to the webhook. `gateway_url` is where the HTTP
/// functions are served (the local gateway or the stand-in account's HTTP API).
pub async fn simulate_recipients(
    sim: &str,
    gateway_url: &str,
    pool: &Pool,
    tenant: TenantId,
    buy_share: f64,
    progress: &dyn Progress,
) -> Result<FunnelActivity, LocalError> {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| LocalError::Gateway(e.to_string()))?;
    let fail = |e: reqwest::Error| LocalError::Gateway(e.to_string());
    let emitted: serde_json::Value = http
        .post(format!("{sim}/_sim/sendgrid/events"))
        .json(&serde_json::json!({ "target_url": format!("{}/webhooks/sendgrid", gateway_url) }))
        .send()
        .await
        .map_err(fail)?
        .json()
        .await
        .map_err(fail)?;
    let mut activity = FunnelActivity {
        sendgrid_events: emitted["events"].as_u64().unwrap_or(0),
        ..FunnelActivity::default()
    };
    progress.stage("sendgrid events", activity.sendgrid_events as usize, 0);
    let mut c = pool.get().await.map_err(DbError::from)?;
    let tx = begin_tenant(&mut c, tenant).await?;
    let clicked = tx
        .query(
            "SELECT e.id, r.token, e.to_email FROM emails e JOIN reports r ON r.id = e.report_id
             WHERE e.kind = 'outreach' AND e.clicked_at IS NOT NULL
               AND NOT EXISTS (SELECT 1 FROM purchases p WHERE p.email_id = e.id) ORDER BY e.id",
            &[],
        )
        .await
        .map_err(DbError::from)?;
    tx.commit().await.map_err(DbError::from)?;
    drop(c);
    for row in clicked {
        // Who buys depends on the address only (not on generated ids), so a clicker buys
        // or not the same way in every run. Which recipients click still varies with the
        // order SendGrid's simulated events are drawn in.
        let to: String = row.get(2);
        let draw = <sha2::Sha256 as sha2::Digest>::digest(to.as_bytes());
        if f64::from(draw[0]) / 256.0 >= buy_share {
            continue;
        }
        let token: String = row.get(1);
        let page = http
            .get(format!("{}/r/{token}", gateway_url))
            .send()
            .await
            .map_err(fail)?;
        if !page.status().is_success() {
            return Err(LocalError::Gateway(format!(
                "report page answered {}",
                page.status()
            )));
        }
        let buy = http
            .post(format!("{}/r/{token}/buy", gateway_url))
            .send()
            .await
            .map_err(fail)?;
        let location = buy
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .ok_or_else(|| {
                LocalError::Gateway(format!("buy answered {} without a redirect", buy.status()))
            })?;
        let session = location.rsplit('/').next().unwrap_or_default().to_owned();
        http.post(format!("{sim}/_sim/stripe/complete"))
            .json(&serde_json::json!({ "session_id": session, "target_url": format!("{}/webhooks/stripe", gateway_url), "duplicate": true }))
            .send()
            .await
            .map_err(fail)?
            .error_for_status()
            .map_err(fail)?;
        activity.checkouts += 1;
        progress.stage("checkouts", activity.checkouts, 0);
    }
    Ok(activity)
}

/// What the simulated recipients did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct FunnelActivity {
    pub sendgrid_events: u64,
    pub checkouts: usize,
}

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
}

pub async fn summarize(pool: &Pool, tenant: TenantId, run: RunId) -> Result<RunSummary, DbError> {
    let mut c = pool.get().await?;
    let tx = begin_tenant(&mut c, tenant).await?;
    let count = |stage: &'static str, events: &'static [&'static str]| {
        let tx = &tx;
        async move {
            let events: Vec<&str> = events.to_vec();
            tx.query_one("SELECT count(*) FROM run_event_logs WHERE run_id = $1 AND stage = $2 AND event = ANY($3)", &[&run.as_uuid(), &stage, &events])
                .await
                .map(|r| r.get::<_, i64>(0))
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
    let r = tx.query_one("SELECT count(*) FILTER (WHERE event = 'SKIPPED_DUE_TO_BUDGET'), count(*) FILTER (WHERE status = 'error') FROM run_event_logs WHERE run_id = $1", &[&run.as_uuid()]).await?;
    s.skipped_by_budget = r.get(0);
    s.failed = r.get(1);
    let f = tx
        .query_one(
            "SELECT count(*) FILTER (WHERE send_state = 'sent'), count(*) FILTER (WHERE send_state = 'queued'),
                    count(*) FILTER (WHERE send_state IN ('failed', 'unknown')), count(delivered_at), count(opened_at), count(clicked_at),
                    count(*) FILTER (WHERE delivery_status IN ('bounced', 'dropped')), count(unsubscribed_at)
             FROM emails WHERE run_id = $1 AND kind = 'outreach'",
            &[&run.as_uuid()],
        )
        .await?;
    (
        s.sent,
        s.deferred,
        s.send_failed,
        s.delivered,
        s.opened,
        s.clicked,
        s.bounced,
        s.unsubscribed,
    ) = (
        f.get(0),
        f.get(1),
        f.get(2),
        f.get(3),
        f.get(4),
        f.get(5),
        f.get(6),
        f.get(7),
    );
    let p = tx
        .query_one(
            "SELECT count(*), coalesce(sum(p.amount_cents - p.refunded_cents), 0)::int8, count(p.fulfilled_at)
             FROM purchases p JOIN emails e ON e.id = p.email_id
             WHERE e.run_id = $1 AND p.status IN ('paid', 'partially_refunded', 'refunded')",
            &[&run.as_uuid()],
        )
        .await?;
    (s.purchased, s.revenue_cents, s.fulfilled) = (p.get(0), p.get(1), p.get(2));
    for row in tx.query("SELECT tier::text, count(*), count(*) FILTER (WHERE qualified) FROM scores WHERE run_id = $1 GROUP BY tier ORDER BY tier", &[&run.as_uuid()]).await? {
        let n: i64 = row.get(1);
        s.scored += n;
        s.qualified += row.get::<_, i64>(2);
        s.tiers.push((row.get(0), n));
    }
    for row in tx.query("SELECT vendor, calls, cost_micros FROM run_vendor_usage WHERE run_id = $1 ORDER BY vendor", &[&run.as_uuid()]).await? {
        let cost: i64 = row.get(2);
        s.cost_micros += cost;
        s.vendors.push((row.get(0), i64::from(row.get::<_, i32>(1)), cost));
    }
    tx.commit().await?;
    Ok(s)
}

/// Copies the run's full PDF reports from the store to `dir/<business>.pdf`; returns the paths.
pub async fn export_reports(
    p: &LocalPipeline,
    run: RunId,
    dir: &std::path::Path,
) -> Result<Vec<PathBuf>, LocalError> {
    let mut c = p.deps.pool.get().await.map_err(DbError::from)?;
    let tx = begin_tenant(&mut c, p.tenant).await?;
    let rows = tx
        .query("SELECT b.name, r.full_key FROM reports r JOIN businesses b ON b.id = r.business_id WHERE r.run_id = $1 ORDER BY b.name", &[&run.as_uuid()])
        .await
        .map_err(DbError::from)?;
    tx.commit().await.map_err(DbError::from)?;
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(LocalError::Sim)?;
    let mut out = Vec::new();
    for r in rows {
        let name: String = r.get(0);
        let slug = shared::domain::slug(&name);
        let key = shared::store::ObjectKey::parse(&r.get::<_, String>(1))?;
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
