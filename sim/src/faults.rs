//! Fault knobs per vendor. Shares are probabilities drawn from the simulator's seeded RNG;
//! `script` is a queue of forced outcomes consumed one request at a time (tests use it for exact
//! sequences such as "429, then success").

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    RateLimited,
    QuotaExhausted,
    ServerError,
    Timeout,
    Malformed,
    Unauthorized,
    /// A 200 whose JSON body is an error envelope (a gateway or a vendor's backend failing).
    ErrorIn200,
    /// A 200 whose JSON body is an empty array where an object belongs.
    ArrayIn200,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Fault {
    /// Added to every response of this vendor.
    pub latency_ms: u64,
    pub rate_429: f64,
    pub rate_5xx: f64,
    pub rate_timeout: f64,
    pub rate_malformed: f64,
    /// How long a "timeout" holds the connection before answering 504.
    pub timeout_ms: u64,
    /// `Retry-After` seconds sent with 429s (vendors that send it).
    pub retry_after_secs: Option<f64>,
    pub script: Vec<Outcome>,
}

impl Fault {
    /// The outcome for the next request, given a uniform draw in 0..1.
    pub fn next(&mut self, draw: f64) -> Outcome {
        if !self.script.is_empty() {
            return self.script.remove(0);
        }
        let mut edge = self.rate_429;
        if draw < edge {
            return Outcome::RateLimited;
        }
        edge += self.rate_5xx;
        if draw < edge {
            return Outcome::ServerError;
        }
        edge += self.rate_timeout;
        if draw < edge {
            return Outcome::Timeout;
        }
        edge += self.rate_malformed;
        if draw < edge {
            return Outcome::Malformed;
        }
        Outcome::Ok
    }
}

/// The names the fault table and request counters use: each vendor's, and `sites` for the
/// businesses' homepages.
pub fn names() -> Vec<&'static str> {
    shared::vendors::Vendor::ALL
        .iter()
        .map(|v| v.as_str())
        .chain(["sites"])
        .collect()
}
