//! delivery: sends each written email through SendGrid, compliantly and at most once; also
//! sends the fulfilment email of each paid purchase (the fulfilment queue) and, on a morning
//! schedule, releases the outreach that yesterday's daily caps held back.
//!
//! Per batch (constant round trips): emails cut off mid-send long ago are parked as `unknown`;
//! the batch's rows are read with their suppression (address, address domain, site domain),
//! pause and campaign state; the day counters of each campaign and each sending domain are
//! locked and the sends both allow (a campaign's daily quota and a domain's daily cap, each held
//! lower by the warm-up schedule in its first days), oldest first, are claimed
//! `queued → sending` and counted, all in the claim's transaction. Only then does SendGrid get
//! the call. A business or an inbox never gets two outreach emails in a campaign: the email row
//! is unique per (campaign, business) and per (campaign, address), and only a `queued` row can
//! be claimed.

mod backlog;
mod counters;
pub mod fulfilment;
mod mailer;
mod outreach;
pub mod send;
mod settings;

use shared::bus::Queue;

pub use backlog::{Released, release_backlog};
pub use counters::{CounterDay, campaign_scope, counter_days, domain_scope, send_scopes};
pub use fulfilment::Fulfilment;
pub use mailer::Mailer;
pub use outreach::{Delivery, Done, Plan};
pub use settings::{DEFAULT_DOMAIN_DAILY_CAP, DEFAULT_WARMUP, Settings};

/// The queues this function sends to: its own queue, for the released backlog.
pub const SENDS_TO: &[Queue] = &[Queue::Delivery];

/// Which handler an SQS record belongs to, by its source queue's ARN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Outreach,
    Fulfilment,
}

pub fn route(event_source_arn: Option<&str>) -> Route {
    match event_source_arn {
        Some(a) if a.ends_with(&format!("-{}", Queue::Fulfilment.name())) => Route::Fulfilment,
        _ => Route::Outreach,
    }
}
