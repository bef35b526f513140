//! Vendor clients: Yelp Fusion, Google Places, PageSpeed Insights, OpenAI, SendGrid, Stripe and
//! Slack. Every client is a thin typed layer over one common HTTP policy ([`core`]): timeouts,
//! retries with jittered exponential backoff that honour `Retry-After`, a per-vendor rate limiter,
//! a circuit breaker, typed errors, and a record of every call with its cost ([`record`]).
//! Base URLs and keys are configuration, so the same code talks to the real services or to the
//! vendor simulator.

pub mod breaker;
pub mod config;
pub mod core;
mod error;
pub mod openai;
pub mod pagespeed;
pub mod pauses;
pub mod places;
mod policy;
pub mod record;
pub mod sendgrid;
pub mod slack;
pub mod stripe;
pub mod yelp;

pub use breaker::{BreakerConfig, CircuitBreaker};
pub use core::{CallContext, VendorHttp};
pub use error::VendorError;
pub use policy::{HttpPolicy, Pause, retry_delay};
pub use record::{CallRecord, Price, PriceTable, recorded, write_cost_ledger};

use std::fmt;

/// The vendors LeadFactory pays or calls.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Vendor {
    Yelp,
    Places,
    PageSpeed,
    OpenAi,
    SendGrid,
    Stripe,
    Slack,
}

impl Vendor {
    pub const ALL: [Vendor; 7] = [
        Vendor::Yelp,
        Vendor::Places,
        Vendor::PageSpeed,
        Vendor::OpenAi,
        Vendor::SendGrid,
        Vendor::Stripe,
        Vendor::Slack,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Vendor::Yelp => "yelp",
            Vendor::Places => "places",
            Vendor::PageSpeed => "pagespeed",
            Vendor::OpenAi => "openai",
            Vendor::SendGrid => "sendgrid",
            Vendor::Stripe => "stripe",
            Vendor::Slack => "slack",
        }
    }
}

impl fmt::Display for Vendor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
