//! The local pipeline: the real stage handlers on embedded defaults — PostgreSQL, the vendor
//! simulator in-process, a local object store and the in-process bus (or any `Bus`) — pumped
//! until every queue is drained. `leadfactory run` and the end-to-end tests both use it.
//!
//! Here: the options and the start (wiring the stages to the simulator, the database, the store
//! and the bus); `driver` pumps the stages, `recipients` plays the recipients' side and
//! `summary` reads a night back.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use shared::bus::{Bus, MemoryBus, Queue, QueueSpec};
use shared::db::{DbError, Pool, begin_tenant};
use shared::domain::{RunId, TenantId};
use shared::pipeline::budget::BudgetLimits;
use shared::pipeline::{Deps, FetchPolicy};
use shared::store::LocalStore;
use shared::vendors::HttpPolicy;
use shared::vendors::config::VendorsConfig;
use sim::{SimConfig, Simulator};

pub use crate::stages::Stages;
pub use recipients::{FunnelActivity, simulate_recipients};
pub use summary::{RunSummary, export_outbox, export_reports, summarize};

mod driver;
mod recipients;
mod summary;

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

/// Each function's configured memory (`MemorySize`), from the template a deployment uses: the
/// local run's compute is priced as if it ran there.
pub fn template_memory() -> Result<std::collections::BTreeMap<String, u32>, LocalError> {
    let t = crate::cloud::template::Template::parse(
        include_str!("../../../infra/template.yaml"),
        &HashMap::new(),
    )
    .map_err(|e| LocalError::Template(e.to_string()))?;
    Ok(t.functions
        .iter()
        .map(|f| (f.binary.clone(), f.memory_mb))
        .collect())
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
    /// The local run's event bus: what the functions published, in order.
    pub events: shared::events::MemoryPublisher,
    /// How many of `events` have been handed to their consumers.
    delivered_events: std::sync::atomic::AtomicUsize,
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
    #[error(transparent)]
    Events(#[from] shared::events::EventError),
    #[error("an event route names {0}, which the local run does not start")]
    NoConsumer(&'static str),
    #[error("infra/template.yaml: {0}")]
    Template(String),
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
        // Every vendor at the simulator.
        let mut env: HashMap<String, String> = shared::vendors::config::VENDOR_PREFIXES
            .iter()
            .map(|v| (format!("LF_{v}_URL"), base.clone()))
            .collect();
        env.extend(
            [
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
            .map(|(k, v)| (k.to_owned(), v)),
        );
        env.extend(opts.env.clone());
        let vendors = VendorsConfig::load(&env)?;
        let events = shared::events::MemoryPublisher::default();
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
            pauses: shared::vendors::pauses::PauseBoard::configured(&env)?,
            events: Some(Arc::new(events.clone())),
            compute: shared::compute::Meter::per_function(
                template_memory()?,
                shared::compute::ComputePrices::default(),
            ),
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
                events: deps.events.clone(),
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
            events,
            delivered_events: std::sync::atomic::AtomicUsize::new(0),
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

    pub fn pool(&self) -> &Pool {
        &self.deps.pool
    }

    /// Hands each event published since the last call to the functions [`EVENT_ROUTES`] names,
    /// as EventBridge's rules hand them in AWS: the local run's event bus.
    pub async fn deliver_events(&self) -> Result<EventDeliveries, LocalError> {
        use std::sync::atomic::Ordering;
        let published = self.events.published();
        let from = self
            .delivered_events
            .swap(published.len(), Ordering::SeqCst);
        let mut out = EventDeliveries::default();
        let today = chrono::Utc::now().date_naive();
        for event in published.iter().skip(from) {
            let name = event["detail-type"].as_str().unwrap_or_default().to_owned();
            *out.published.entry(name.clone()).or_default() += 1;
            for (_, consumer) in EVENT_ROUTES.iter().filter(|(t, _)| t.as_str() == name) {
                match *consumer {
                    "analytics" => {
                        out.rollup_rows += analytics::handle(self.pool(), event, today).await?.rows;
                    }
                    "qa-sampler" => {
                        out.qa_samples += qa_sampler::handle(
                            &self.deps,
                            event,
                            qa_sampler::DEFAULT_SAMPLE,
                            chrono::Utc::now(),
                        )
                        .await?
                        .samples;
                    }
                    other => return Err(LocalError::NoConsumer(other)),
                }
            }
        }
        Ok(out)
    }
}

/// The functions each domain event is routed to, as the template's `EventBridgeRule` events
/// route them (the template test checks that the two agree).
pub const EVENT_ROUTES: &[(shared::events::DetailType, &str)] = &[
    (shared::events::DetailType::RunFinished, "analytics"),
    (shared::events::DetailType::RunFinished, "qa-sampler"),
];

/// What [`LocalPipeline::deliver_events`] handed on.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct EventDeliveries {
    /// Events published, per detail type.
    pub published: std::collections::BTreeMap<String, usize>,
    pub qa_samples: u64,
    pub rollup_rows: u64,
}
