//! Where events go: EventBridge's `PutEvents` in AWS (moto in tests and the local cloud), an
//! in-process list for the local run.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;

use super::SOURCE;

/// `PutEvents` takes at most ten entries per call.
pub const MAX_ENTRIES: usize = 10;

/// One event to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    pub detail_type: String,
    /// The detail as JSON text.
    pub detail: String,
    pub time: chrono::DateTime<chrono::Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("event bus {bus}: {detail}")]
    Service { bus: String, detail: String },
}

#[async_trait]
pub trait Publisher: Send + Sync {
    /// Publishes up to [`MAX_ENTRIES`] events; per event, `None` when it was accepted or the
    /// reason it was not. An error means none is known to have been accepted.
    async fn put(&self, events: &[Outgoing]) -> Result<Vec<Option<String>>, PublishError>;
}

/// An EventBridge client from shared SDK configuration.
pub fn eventbridge_client(sdk: &aws_config::SdkConfig) -> aws_sdk_eventbridge::Client {
    aws_sdk_eventbridge::Client::new(sdk)
}

/// A custom EventBridge bus (`LF_EVENT_BUS_NAME`).
#[derive(Debug)]
pub struct EventBridgePublisher {
    client: crate::aws::LazyClient<aws_sdk_eventbridge::Client>,
    bus: String,
}

impl EventBridgePublisher {
    /// The client is built on the first publish (a cold start builds none).
    pub fn lazy(sdk: &Arc<crate::aws::LazySdk>, bus: String) -> Self {
        Self {
            client: crate::aws::LazyClient::new(sdk.clone(), eventbridge_client),
            bus,
        }
    }

    pub fn new(client: aws_sdk_eventbridge::Client, bus: String) -> Self {
        Self {
            client: crate::aws::LazyClient::ready(client),
            bus,
        }
    }
}

#[async_trait]
impl Publisher for EventBridgePublisher {
    async fn put(&self, events: &[Outgoing]) -> Result<Vec<Option<String>>, PublishError> {
        crate::compute::count(
            crate::compute::Service::Events,
            u32::try_from(events.len()).unwrap_or(u32::MAX),
        );
        let service = |detail: String| PublishError::Service {
            bus: self.bus.clone(),
            detail,
        };
        let entries = events
            .iter()
            .map(|e| {
                PutEventsRequestEntry::builder()
                    .event_bus_name(&self.bus)
                    .source(SOURCE)
                    .detail_type(&e.detail_type)
                    .detail(&e.detail)
                    .time(aws_sdk_eventbridge::primitives::DateTime::from_millis(
                        e.time.timestamp_millis(),
                    ))
                    .build()
            })
            .collect::<Vec<_>>();
        let out = self
            .client
            .get()
            .await
            .put_events()
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| service(aws_sdk_eventbridge::error::DisplayErrorContext(e).to_string()))?;
        let results = out.entries();
        if results.len() != events.len() {
            return Err(service(format!(
                "answered {} entries for {} events",
                results.len(),
                events.len()
            )));
        }
        Ok(results
            .iter()
            .map(|r| {
                r.error_code()
                    .map(|code| format!("{code}: {}", r.error_message().unwrap_or_default()))
            })
            .collect())
    }
}

/// The local run's bus: every published event kept in order, for the local run to hand to the
/// consumers the template routes them to and for tests to read.
#[derive(Debug, Default, Clone)]
pub struct MemoryPublisher {
    events: Arc<Mutex<Vec<serde_json::Value>>>,
}

impl MemoryPublisher {
    /// Every event published so far, each as EventBridge delivers it to a target (`source`,
    /// `detail-type`, `time`, `detail`).
    pub fn published(&self) -> Vec<serde_json::Value> {
        self.events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

#[async_trait]
impl Publisher for MemoryPublisher {
    async fn put(&self, events: &[Outgoing]) -> Result<Vec<Option<String>>, PublishError> {
        // Priced as EventBridge would bill it.
        crate::compute::count(
            crate::compute::Service::Events,
            u32::try_from(events.len()).unwrap_or(u32::MAX),
        );
        let mut kept = self
            .events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(events
            .iter()
            .map(
                |e| match serde_json::from_str::<serde_json::Value>(&e.detail) {
                    Ok(detail) => {
                        kept.push(serde_json::json!({
                            "version": "0",
                            "id": uuid::Uuid::new_v4(),
                            "source": SOURCE,
                            "detail-type": e.detail_type,
                            "time": e.time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                            "detail": detail,
                        }));
                        None
                    }
                    Err(err) => Some(format!("MalformedDetail: {err}")),
                },
            )
            .collect())
    }
}
