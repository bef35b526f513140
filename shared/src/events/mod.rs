//! Domain events on the EventBridge bus: the facts other systems (and our own qa-sampler and
//! analytics) act on, each a `detail-type` with a versioned `detail` whose JSON Schema is
//! `docs/events/<DetailType>.schema.json`.
//!
//! Publishing follows the queue hops' at-least-once discipline ([`outbox`]): an event is a row
//! of `domain_events` written in the transaction that makes its fact true, published after that
//! transaction commits, and published again by the next delivery that finds it waiting (a
//! redelivery, a Stripe retry, the alerts function's sweep). Consumers dedupe by the detail's
//! `event_id` ([`outbox::consume`]). Details carry ids, amounts and states, never a person's
//! address: a consumer that needs the buyer reads it through the ops API.

mod detail;
pub mod outbox;
mod publisher;

pub use detail::{
    AlertRaised, CampaignExhausted, Header, PurchasePaid, PurchaseRefunded, Received, RunFinished,
    StageCounts,
};
pub use outbox::{Flushed, consume, flush, flush_on, record};
pub use publisher::{
    EventBridgePublisher, MemoryPublisher, Outgoing, PublishError, Publisher, eventbridge_client,
};

/// The `source` of every event LeadFactory publishes (rules match on it).
pub const SOURCE: &str = "leadfactory";

/// The version of every detail below; a change a consumer could trip on is a new version.
pub const DETAIL_VERSION: u32 = 1;

/// Declares the events once: the variant and its `detail-type` (also the schema's file name and
/// `domain_events.detail_type`).
macro_rules! detail_types {
    ($($ty:ident,)*) => {
        /// The events LeadFactory publishes.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum DetailType {
            $($ty,)*
        }

        impl DetailType {
            pub const ALL: &'static [DetailType] = &[$(DetailType::$ty,)*];

            /// The `detail-type`.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(DetailType::$ty => stringify!($ty),)*
                }
            }
        }
    };
}

detail_types! {
    RunFinished,
    PurchasePaid,
    PurchaseRefunded,
    AlertRaised,
    CampaignExhausted,
}

impl DetailType {
    /// The detail type named `name`, if LeadFactory publishes one.
    pub fn named(name: &str) -> Option<DetailType> {
        Self::ALL.iter().copied().find(|t| t.as_str() == name)
    }
}

impl std::fmt::Display for DetailType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an event could not be recorded, published or read.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error("could not encode a {0} detail: {1}")]
    Encode(DetailType, serde_json::Error),
    /// An incoming event claims our source but is not one we publish, or its detail does not
    /// read as its type's (the message names which and why).
    #[error("event from {SOURCE}: {0}")]
    Malformed(String),
}

impl From<tokio_postgres::Error> for EventError {
    fn from(e: tokio_postgres::Error) -> Self {
        EventError::Db(crate::db::DbError::Postgres(e))
    }
}
