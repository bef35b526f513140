//! The queue hop between stages, behind one trait: SQS in AWS (moto in tests), an in-process
//! queue with the same semantics (visibility timeout, receive count, dead-letter queue) for the
//! local run. Messages are [`Envelope`]s serialised as JSON.

pub mod dlq;
mod envelope;
mod memory;
mod sqs;

use std::time::Duration;

use async_trait::async_trait;

pub use envelope::{ENVELOPE_VERSION, Envelope, EnvelopeError};
pub use memory::{MemoryBus, QueueSpec};
pub use sqs::{SqsBus, sqs_client};

/// Declares the pipeline's queues once: the variant, its logical name (the SQS queue's, the
/// template's `<Name>Queue`, the `LF_QUEUE_<NAME>_URL` variable's) and its dead-letter queue's.
macro_rules! queues {
    ($($queue:ident => $name:literal,)*) => {
        /// The pipeline's queues, each the input of one stage and each with a dead-letter queue
        /// (`<name>-dlq`) beside it.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Queue {
            $($queue,)*
        }

        impl Queue {
            /// Every queue, in the order of the pipeline.
            pub const ALL: &'static [Queue] = &[$(Queue::$queue,)*];

            /// The queue's logical name.
            pub const fn name(self) -> &'static str {
                match self {
                    $(Queue::$queue => $name,)*
                }
            }

            /// The logical name of the queue's dead-letter queue.
            pub const fn dlq(self) -> &'static str {
                match self {
                    $(Queue::$queue => concat!($name, "-dlq"),)*
                }
            }
        }
    };
}

queues! {
    Sourcing => "sourcing",
    Enrichment => "enrichment",
    Assessment => "assessment",
    Scoring => "scoring",
    Reports => "reports",
    Personalization => "personalization",
    Delivery => "delivery",
    Fulfilment => "fulfilment",
}

impl Queue {
    /// The queue of a logical name, if the pipeline has one.
    pub fn named(name: &str) -> Option<Queue> {
        Self::ALL.iter().copied().find(|q| q.name() == name)
    }
}

impl std::fmt::Display for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// SQS's limits, which the in-process bus enforces too so the local run cannot pass what AWS refuses.
pub const MAX_BATCH_ENTRIES: usize = 10;
pub const MAX_BATCH_BYTES: usize = 262_144;
/// SQS's longest message delay.
pub const MAX_DELAY: Duration = Duration::from_secs(900);

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("unknown queue {0:?}")]
    UnknownQueue(String),
    #[error("message of {size} bytes exceeds the {MAX_BATCH_BYTES}-byte limit")]
    TooLarge { size: usize },
    #[error("queue {queue} rejected a message: {detail}")]
    Rejected { queue: String, detail: String },
    #[error("receipt {0:?} is not valid (already deleted or expired)")]
    BadReceipt(String),
    #[error("queue service error on {queue}: {detail}")]
    Service { queue: String, detail: String },
    #[error("could not serialise message: {0}")]
    Serialise(String),
}

/// One received message. It stays invisible to other receivers until its visibility timeout ends
/// or it is deleted with `receipt`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub message_id: String,
    pub receipt: String,
    /// How many times the message has been received, this time included.
    pub receive_count: u32,
    pub body: String,
}

/// Approximate message counts, as SQS reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueDepth {
    pub visible: u64,
    pub in_flight: u64,
}

#[async_trait]
pub trait Bus: Send + Sync {
    /// Sends bodies in as few batches as the limits allow; every body is accepted or this errs.
    async fn send_batch(&self, queue: &str, bodies: &[String]) -> Result<(), BusError> {
        self.send_delayed(queue, bodies, Duration::ZERO).await
    }
    /// As [`Bus::send_batch`], each message invisible for `delay` first (at most
    /// [`MAX_DELAY`]): work that must wait (a paused vendor) without a receive counting
    /// against its queue's `maxReceiveCount`.
    async fn send_delayed(
        &self,
        queue: &str,
        bodies: &[String],
        delay: Duration,
    ) -> Result<(), BusError>;
    /// Receives up to `max` visible messages (at most 10), without waiting.
    async fn receive(&self, queue: &str, max: usize) -> Result<Vec<Delivery>, BusError>;
    /// Deletes a received message: the acknowledgement that it was processed.
    async fn delete(&self, queue: &str, receipt: &str) -> Result<(), BusError>;
    /// Changes a received message's remaining invisibility (zero makes it visible at once).
    async fn change_visibility(
        &self,
        queue: &str,
        receipt: &str,
        timeout: Duration,
    ) -> Result<(), BusError>;
    async fn depth(&self, queue: &str) -> Result<QueueDepth, BusError>;
}

/// Splits bodies into batches within SQS's entry-count and total-size limits.
pub fn plan_batches(bodies: &[String]) -> Result<Vec<&[String]>, BusError> {
    let mut batches = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, body) in bodies.iter().enumerate() {
        if body.len() > MAX_BATCH_BYTES {
            return Err(BusError::TooLarge { size: body.len() });
        }
        if i - start == MAX_BATCH_ENTRIES || bytes + body.len() > MAX_BATCH_BYTES {
            batches.push(&bodies[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += body.len();
    }
    if start < bodies.len() {
        batches.push(&bodies[start..]);
    }
    Ok(batches)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_respect_count_and_size() {
        let small: Vec<String> = (0..23).map(|i| format!("m{i}")).collect();
        let b = plan_batches(&small).unwrap();
        assert_eq!(
            b.iter().map(|x| x.len()).collect::<Vec<_>>(),
            vec![10, 10, 3]
        );

        let big: Vec<String> = (0..5).map(|_| "x".repeat(100_000)).collect();
        let b = plan_batches(&big).unwrap();
        assert_eq!(b.iter().map(|x| x.len()).collect::<Vec<_>>(), vec![2, 2, 1]);
        assert!(
            b.iter()
                .all(|x| x.iter().map(String::len).sum::<usize>() <= MAX_BATCH_BYTES)
        );

        assert!(matches!(
            plan_batches(&["y".repeat(MAX_BATCH_BYTES + 1)]),
            Err(BusError::TooLarge { .. })
        ));
        assert!(plan_batches(&[]).unwrap().is_empty());
    }
}
