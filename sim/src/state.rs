//! The simulator's shared state: configuration, fault table, seeded RNG, and what it has
//! received (mail outbox, Slack messages, checkout sessions, request counts).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, OnceLock};

use rand::{Rng, SeedableRng, rngs::StdRng};
use serde::{Deserialize, Serialize};

use crate::faults::{Fault, Outcome};

/// Keys and knobs. Defaults are the test credentials the local run and tests use.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct SimConfig {
    pub seed: u64,
    pub yelp_key: String,
    pub google_key: String,
    pub openai_key: String,
    pub sendgrid_key: String,
    pub stripe_key: String,
    pub stripe_webhook_secret: String,
    /// The path of the Slack incoming webhook the local run posts to (`/services/T/B/secret`:
    /// the whole URL is the secret).
    pub slack_path: String,
    /// 32-byte seed of the SendGrid event-signing key (test key pair).
    pub sendgrid_signing_seed: u8,
    /// Yelp's search depth cap (`offset + limit`), reported as 240 since 2021.
    pub yelp_depth_cap: u32,
    pub yelp_daily_limit: u32,
    pub faults: HashMap<String, Fault>,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            seed: 42,
            yelp_key: "sim-yelp-key".into(),
            google_key: "sim-google-key".into(),
            openai_key: "sk-sim-openai".into(),
            sendgrid_key: "SG.sim-sendgrid".into(),
            stripe_key: "sk_test_sim".into(),
            stripe_webhook_secret: "whsec_sim".into(),
            slack_path: "/services/T000/B000/XXXX".into(),
            sendgrid_signing_seed: 7,
            yelp_depth_cap: 240,
            yelp_daily_limit: 5_000,
            faults: HashMap::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutboxMail {
    pub message_id: String,
    pub to: Vec<String>,
    pub from: String,
    pub subject: String,
    pub text: Option<String>,
    pub html: Option<String>,
    pub headers: serde_json::Value,
    pub custom_args: serde_json::Value,
    pub attachments: usize,
    pub received_at: i64,
    /// Whether events have been emitted for it already.
    pub evented: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Session {
    pub json: serde_json::Value,
    pub fingerprint: String,
}

pub struct SimState {
    pub cfg: SimConfig,
    pub base_url: OnceLock<String>,
    pub faults: Mutex<HashMap<String, Fault>>,
    pub rng: Mutex<StdRng>,
    pub outbox: Mutex<Vec<OutboxMail>>,
    pub slack: Mutex<Vec<serde_json::Value>>,
    pub sessions: Mutex<HashMap<String, Session>>,
    pub idempotency: Mutex<HashMap<String, String>>,
    pub requests: Mutex<HashMap<String, u64>>,
    pub http: reqwest::Client,
}

pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl SimState {
    pub fn new(cfg: SimConfig) -> Self {
        Self {
            faults: Mutex::new(cfg.faults.clone()),
            rng: Mutex::new(StdRng::seed_from_u64(cfg.seed)),
            base_url: OnceLock::new(),
            outbox: Mutex::new(Vec::new()),
            slack: Mutex::new(Vec::new()),
            sessions: Mutex::new(HashMap::new()),
            idempotency: Mutex::new(HashMap::new()),
            requests: Mutex::new(HashMap::new()),
            http: reqwest::Client::new(),
            cfg,
        }
    }

    pub fn base_url(&self) -> &str {
        self.base_url
            .get()
            .map(String::as_str)
            .unwrap_or("http://127.0.0.1")
    }

    /// Counts the request and decides its outcome; the latency to add comes back with it.
    pub fn outcome(&self, vendor: &str) -> (Outcome, Fault) {
        *lock(&self.requests).entry(vendor.to_owned()).or_default() += 1;
        let draw: f64 = lock(&self.rng).random();
        let mut faults = lock(&self.faults);
        let f = faults.entry(vendor.to_owned()).or_default();
        let o = f.next(draw);
        (o, f.clone())
    }

    pub fn random(&self) -> f64 {
        lock(&self.rng).random()
    }

    pub fn token(&self, len: usize) -> String {
        let mut rng = lock(&self.rng);
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        (0..len)
            .map(|_| alphabet[rng.random_range(0..alphabet.len())] as char)
            .collect()
    }
}
