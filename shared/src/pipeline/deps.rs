//! Everything a function needs, built once per container by its `main` (or by the local run and
//! tests with local parts).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use super::budget::BudgetLimits;
use crate::bus::{Bus, Queue, SqsBus};
use crate::config::{CoreConfig, Mode, Reader};
use crate::db::Pool;
use crate::lambda::StartError;
use crate::store::ObjectStore;
use crate::vendors::HttpPolicy;
use crate::vendors::config::VendorsConfig;

/// How outbound homepage fetches behave (the SSRF guard lives in the assessment function).
#[derive(Debug, Clone)]
pub struct FetchPolicy {
    /// Development only: allow loopback/private targets (the simulator's sites).
    pub allow_private: bool,
    /// Development only: resolve `*.test` host names to this address (the simulator).
    pub test_tld_addr: Option<IpAddr>,
    pub timeout: Duration,
    pub max_bytes: usize,
    pub max_redirects: usize,
}

impl FetchPolicy {
    pub fn production() -> Self {
        Self {
            allow_private: false,
            test_tld_addr: None,
            timeout: Duration::from_secs(10),
            max_bytes: 2 * 1024 * 1024,
            max_redirects: 5,
        }
    }

    /// For the local run and tests: the simulator's sites on loopback are allowed.
    pub fn development() -> Self {
        Self {
            allow_private: true,
            test_tld_addr: Some(IpAddr::from([127, 0, 0, 1])),
            ..Self::production()
        }
    }
}

pub struct Deps {
    pub mode: Mode,
    pub pool: Pool,
    pub bus: Arc<dyn Bus>,
    pub store: Arc<dyn ObjectStore>,
    pub vendors: VendorsConfig,
    pub policy: HttpPolicy,
    pub budgets: BudgetLimits,
    pub fetch: FetchPolicy,
    /// Public base URL of the storefront (links in emails and reports).
    pub public_base_url: String,
    /// The queues' `maxReceiveCount` (`LF_MAX_RECEIVE_COUNT`, which the template sets from the
    /// same parameter as every queue's redrive policy): a message failing on this receive is
    /// dead-lettered, and its run counts it as ended.
    pub max_receive_count: u32,
    /// The vendor kill switch as this container last read it.
    pub pauses: crate::vendors::pauses::PauseBoard,
    /// Where domain events are published (`LF_EVENT_BUS_NAME`); `None` keeps them waiting in
    /// `domain_events`.
    pub events: Option<Arc<dyn crate::events::Publisher>>,
    /// The function's compute meter (its memory, the prices, usage not yet written).
    pub compute: crate::compute::Meter,
}

/// `maxReceiveCount` of the queues when `LF_MAX_RECEIVE_COUNT` is not set.
pub const DEFAULT_MAX_RECEIVE_COUNT: u32 = 5;

impl Deps {
    /// Production wiring from the environment: SQS queues from `LF_QUEUE_<NAME>_URL`, S3 or a local
    /// store, vendor clients' settings. Makes no network call (connections are lazy). The URL of
    /// every queue in `sends_to` (the function's `SENDS_TO`) is required: a deployment that
    /// forgot one fails at start, naming the variable, not at its first send.
    pub async fn from_env(sends_to: &[Queue]) -> Result<Deps, StartError> {
        Self::from_source(&crate::secrets::from_env().await?, sends_to)
    }

    /// As [`Self::from_env`], from a source already read (a function that needs more settings
    /// fetches its secrets once).
    pub fn from_source(
        source: &dyn crate::config::Source,
        sends_to: &[Queue],
    ) -> Result<Deps, StartError> {
        let core = CoreConfig::load(source)?;
        let vendors = VendorsConfig::load(source)?;
        let mut r = Reader::new(source);
        let budgets = BudgetLimits {
            yelp: r.parsed_or("LF_BUDGET_YELP_MICROS", BudgetLimits::default().yelp),
            places: r.parsed_or("LF_BUDGET_PLACES_MICROS", BudgetLimits::default().places),
            llm: r.parsed_or("LF_BUDGET_LLM_MICROS", BudgetLimits::default().llm),
        };
        let public_base_url = r
            .optional("LF_PUBLIC_BASE_URL")
            .unwrap_or_else(|| "https://reports.example.com".into());
        let max_receive_count = r.parsed_or("LF_MAX_RECEIVE_COUNT", DEFAULT_MAX_RECEIVE_COUNT);
        let event_bus = r.optional("LF_EVENT_BUS_NAME");
        let mut urls = HashMap::new();
        for q in Queue::ALL {
            for (name, sent_to) in [(q.name(), sends_to.contains(q)), (q.dlq(), false)] {
                let var = format!("LF_QUEUE_{}_URL", name.replace('-', "_").to_uppercase());
                if sent_to {
                    let u = r.required(&var);
                    urls.insert(name.to_owned(), u);
                } else if let Some(u) = r.optional(&var) {
                    urls.insert(name.to_owned(), u);
                }
            }
        }
        r.finish(())?;
        let compute = crate::compute::Meter::from_source(source)?;
        // Clients are built on first use: a cold start makes no SDK call and loads no config.
        let sdk = crate::aws::LazySdk::new(core.aws_endpoint_url.clone());
        let store = crate::store::from_config(&core.store, &sdk);
        let bus: Arc<dyn Bus> = Arc::new(SqsBus::lazy(&sdk, urls));
        let events = event_bus.map(|name| {
            Arc::new(crate::events::EventBridgePublisher::lazy(&sdk, name))
                as Arc<dyn crate::events::Publisher>
        });
        let fetch = match core.mode {
            Mode::Production => FetchPolicy::production(),
            Mode::Development => FetchPolicy::development(),
        };
        Ok(Deps {
            mode: core.mode,
            pool: crate::db::connect(&core.database_url, core.db_pool_size)?,
            bus,
            store,
            vendors,
            policy: HttpPolicy::default(),
            budgets,
            fetch,
            public_base_url,
            max_receive_count,
            pauses: crate::vendors::pauses::PauseBoard::configured(source)?,
            events,
            compute,
        })
    }

    /// Publishes the tenant's waiting domain events ([`crate::events::flush`]): after a commit
    /// that recorded one, and on a redelivery, which may find one its first delivery left.
    pub async fn publish_events(
        &self,
        tenant: crate::domain::TenantId,
    ) -> Result<crate::events::Flushed, crate::events::EventError> {
        crate::events::flush(&self.pool, self.events.as_deref(), tenant).await
    }
}
