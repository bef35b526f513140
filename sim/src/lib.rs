//! The vendor simulator: one axum server on a loopback port that speaks Yelp Fusion, Google
//! Places, PageSpeed Insights, OpenAI, SendGrid, Stripe and Slack in their real wire formats,
//! hosts the simulated businesses' websites (by `Host: www.<slug>.test`), and has admin
//! endpoints under `/_sim/` for the outbox, signed webhooks and fault knobs.
//!
//! Start it in-process with [`Simulator::start`]; `leadfactory sim` runs it standalone.

mod admin;
pub mod data;
pub mod faults;
mod mail;
mod openai;
mod places;
mod psi;
mod shapes;
mod sites;
pub mod state;
mod stripe;
mod yelp;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};

pub use faults::{Fault, Outcome};
pub use sites::DESIGNER_EMAIL;
pub use state::{SimConfig, SimState};

/// The admin endpoints, for `leadfactory sim` to print.
pub const ADMIN_ENDPOINTS: &[(&str, &str)] = &[
    ("GET  /_sim/health", "liveness"),
    ("GET  /_sim/requests", "requests seen per vendor"),
    (
        "GET  /_sim/faults, POST /_sim/faults",
        "fault knobs per vendor: latency_ms, rate_429, rate_5xx, rate_timeout, rate_malformed, timeout_ms, retry_after_secs, script",
    ),
    (
        "GET  /_sim/sendgrid/outbox",
        "mail accepted by /v3/mail/send",
    ),
    (
        "GET  /_sim/sendgrid/public-key",
        "the event-webhook verification key (base64 DER)",
    ),
    (
        "POST /_sim/sendgrid/events",
        "{target_url, mix} — sign and POST events for the outbox",
    ),
    ("GET  /_sim/stripe/sessions", "checkout sessions"),
    (
        "POST /_sim/stripe/complete",
        "{session_id, target_url, duplicate} — pay and POST checkout.session.completed",
    ),
    (
        "POST /_sim/stripe/refund",
        "{session_id, target_url} — POST charge.refunded",
    ),
    (
        "GET  /_sim/slack/messages",
        "messages posted to Slack webhooks",
    ),
    ("POST /_sim/reset", "clear everything but the seed"),
];

pub fn router(state: Arc<SimState>) -> Router {
    Router::new()
        .route("/v3/businesses/search", get(yelp::search))
        .route("/v1/places:searchText", post(places::search_text))
        .route("/pagespeedonline/v5/runPagespeed", get(psi::run))
        .route("/v1/chat/completions", post(openai::chat))
        .route("/v3/mail/send", post(mail::send))
        .route("/v1/checkout/sessions", post(stripe::create_session))
        .route("/v1/checkout/sessions/{id}", get(stripe::get_session))
        .route("/services/{a}/{b}/{c}", post(admin::slack))
        .route("/_sim/health", get(admin::health))
        .route("/_sim/requests", get(admin::requests))
        .route(
            "/_sim/faults",
            get(admin::get_faults).post(admin::set_faults),
        )
        .route("/_sim/reset", post(admin::reset))
        .route("/_sim/sendgrid/outbox", get(mail::outbox))
        .route("/_sim/sendgrid/public-key", get(mail::public_key))
        .route("/_sim/sendgrid/events", post(mail::emit))
        .route("/_sim/stripe/sessions", get(stripe::list_sessions))
        .route("/_sim/stripe/complete", post(stripe::complete))
        .route("/_sim/stripe/refund", post(stripe::refund))
        .route("/_sim/slack/messages", get(admin::slack_messages))
        .fallback(sites::serve)
        .with_state(state)
}

/// The name of the threads of a simulator on its own runtime (benchmarks subtract their CPU).
pub const SIM_THREAD: &str = "lf-sim";

/// A running simulator; dropping it stops the server.
pub struct Simulator {
    pub addr: SocketAddr,
    pub state: Arc<SimState>,
    task: tokio::task::JoinHandle<()>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Simulator {
    /// Binds `addr` (port 0 for any free port) and serves in a background task.
    pub async fn start(cfg: SimConfig, addr: SocketAddr) -> std::io::Result<Simulator> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(SimState::new(cfg));
        let _ = state.base_url.set(format!("http://{addr}"));
        let app = router(state.clone());
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "simulator stopped");
            }
        });
        Ok(Simulator {
            addr,
            state,
            task,
            runtime: None,
        })
    }

    /// On any free loopback port, served by its own runtime whose `workers` threads are named
    /// [`SIM_THREAD`]: the CPU the vendors' stand-in burns can then be told apart from ours.
    pub fn start_on_own_runtime(cfg: SimConfig, workers: usize) -> std::io::Result<Simulator> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers.max(1))
            .thread_name(SIM_THREAD)
            .enable_all()
            .build()?;
        let listener = std::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let state = Arc::new(SimState::new(cfg));
        let _ = state.base_url.set(format!("http://{addr}"));
        let app = router(state.clone());
        let task = runtime.spawn(async move {
            let served = match tokio::net::TcpListener::from_std(listener) {
                Ok(l) => axum::serve(l, app).await,
                Err(e) => Err(e),
            };
            if let Err(e) = served {
                tracing::error!(error = %e, "simulator stopped");
            }
        });
        Ok(Simulator {
            addr,
            state,
            task,
            runtime: Some(runtime),
        })
    }

    /// On any free loopback port.
    pub async fn start_local(cfg: SimConfig) -> std::io::Result<Simulator> {
        Self::start(cfg, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The public half of the key the simulator signs SendGrid events with (base64 DER, as
    /// SendGrid shows it): what a webhook receiver is configured with.
    pub fn sendgrid_public_key(&self) -> Result<String, shared::webhook::SignatureError> {
        shared::webhook::sendgrid::public_key_base64(&mail::signing_key(&self.state))
    }

    /// The key itself, for a harness that posts signed events of its own (the HTTP load
    /// benchmark) as SendGrid would.
    pub fn sendgrid_signing_key(&self) -> p256::ecdsa::SigningKey {
        mail::signing_key(&self.state)
    }

    /// Waits until the server task ends (it ends when dropped).
    pub async fn wait(mut self) {
        let _ = (&mut self.task).await;
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.task.abort();
        // Without blocking: the simulator is often dropped inside another runtime.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}
