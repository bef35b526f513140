//! Amazon SQS. Logical queue names map to queue URLs given at construction (from configuration
//! in Lambda, from `GetQueueUrl` locally). Entries a batch send reports as failed are retried
//! with backoff unless SQS says the sender is at fault.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::types::{
    MessageSystemAttributeName, QueueAttributeName, SendMessageBatchRequestEntry,
};

use super::{Bus, BusError, Delivery, MAX_BATCH_ENTRIES, QueueDepth, plan_batches};

const SEND_ATTEMPTS: u32 = 4;

/// An SQS client from shared SDK configuration (functions need no direct SDK dependency).
pub fn sqs_client(sdk: &aws_config::SdkConfig) -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(sdk)
}

#[derive(Debug, Clone)]
pub struct SqsBus {
    client: Arc<crate::aws::LazyClient<aws_sdk_sqs::Client>>,
    urls: HashMap<String, String>,
}

fn service(queue: &str, e: impl std::error::Error) -> BusError {
    BusError::Service {
        queue: queue.to_owned(),
        detail: aws_sdk_sqs::error::DisplayErrorContext(e).to_string(),
    }
}

impl SqsBus {
    pub fn new(client: aws_sdk_sqs::Client, urls: HashMap<String, String>) -> Self {
        Self {
            client: Arc::new(crate::aws::LazyClient::ready(client)),
            urls,
        }
    }

    /// The client is built on the first send or receive (a function's cold start builds none).
    pub fn lazy(sdk: &Arc<crate::aws::LazySdk>, urls: HashMap<String, String>) -> Self {
        Self {
            client: Arc::new(crate::aws::LazyClient::new(sdk.clone(), sqs_client)),
            urls,
        }
    }

    /// Looks up the URL of each `prefix + name` queue (one call per queue, at start-up).
    pub async fn resolve(
        client: aws_sdk_sqs::Client,
        prefix: &str,
        names: &[String],
    ) -> Result<Self, BusError> {
        let mut urls = HashMap::new();
        for name in names {
            let full = format!("{prefix}{name}");
            let out = client
                .get_queue_url()
                .queue_name(&full)
                .send()
                .await
                .map_err(|e| service(&full, e))?;
            let url = out
                .queue_url()
                .ok_or_else(|| BusError::UnknownQueue(full.clone()))?;
            urls.insert(name.clone(), url.to_owned());
        }
        Ok(Self::new(client, urls))
    }

    fn url(&self, queue: &str) -> Result<&str, BusError> {
        self.urls
            .get(queue)
            .map(String::as_str)
            .ok_or_else(|| BusError::UnknownQueue(queue.to_owned()))
    }

    async fn send_one_batch(
        &self,
        queue: &str,
        url: &str,
        bodies: &[String],
        delay_seconds: i32,
    ) -> Result<(), BusError> {
        let mut pending: Vec<(String, &String)> = bodies
            .iter()
            .enumerate()
            .map(|(i, b)| (i.to_string(), b))
            .collect();
        let mut delay = Duration::from_millis(50);
        for attempt in 1..=SEND_ATTEMPTS {
            crate::compute::count(crate::compute::Service::Sqs, 1);
            let entries = pending
                .iter()
                .map(|(id, body)| {
                    SendMessageBatchRequestEntry::builder()
                        .id(id)
                        .message_body(*body)
                        .set_delay_seconds((delay_seconds > 0).then_some(delay_seconds))
                        .build()
                        .map_err(|e| BusError::Serialise(e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let out = self
                .client
                .get()
                .await
                .send_message_batch()
                .queue_url(url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| service(queue, e))?;
            let failed = out.failed();
            if failed.is_empty() {
                return Ok(());
            }
            if let Some(f) = failed.iter().find(|f| f.sender_fault()) {
                return Err(BusError::Rejected {
                    queue: queue.to_owned(),
                    detail: format!("{}: {}", f.code(), f.message().unwrap_or_default()),
                });
            }
            if attempt == SEND_ATTEMPTS {
                return Err(BusError::Service {
                    queue: queue.to_owned(),
                    detail: format!(
                        "{} entries still failing after {SEND_ATTEMPTS} attempts",
                        failed.len()
                    ),
                });
            }
            let retry: std::collections::HashSet<&str> = failed
                .iter()
                .map(aws_sdk_sqs::types::BatchResultErrorEntry::id)
                .collect();
            pending.retain(|(id, _)| retry.contains(id.as_str()));
            tokio::time::sleep(delay).await;
            delay *= 2;
        }
        Ok(())
    }
}

#[async_trait]
impl Bus for SqsBus {
    async fn send_delayed(
        &self,
        queue: &str,
        bodies: &[String],
        delay: Duration,
    ) -> Result<(), BusError> {
        let url = self.url(queue)?;
        let delay = delay.min(super::MAX_DELAY).as_secs() as i32;
        for batch in plan_batches(bodies)? {
            self.send_one_batch(queue, url, batch, delay).await?;
        }
        Ok(())
    }

    async fn receive(&self, queue: &str, max: usize) -> Result<Vec<Delivery>, BusError> {
        crate::compute::count(crate::compute::Service::Sqs, 1);
        let url = self.url(queue)?;
        let out = self
            .client
            .get()
            .await
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(max.clamp(1, MAX_BATCH_ENTRIES) as i32)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .wait_time_seconds(0)
            .send()
            .await
            .map_err(|e| service(queue, e))?;
        Ok(out
            .messages()
            .iter()
            .map(|m| Delivery {
                message_id: m.message_id().unwrap_or_default().to_owned(),
                receipt: m.receipt_handle().unwrap_or_default().to_owned(),
                receive_count: m
                    .attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(1),
                body: m.body().unwrap_or_default().to_owned(),
            })
            .collect())
    }

    async fn delete(&self, queue: &str, receipt: &str) -> Result<(), BusError> {
        crate::compute::count(crate::compute::Service::Sqs, 1);
        let url = self.url(queue)?;
        self.client
            .get()
            .await
            .delete_message()
            .queue_url(url)
            .receipt_handle(receipt)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| service(queue, e))
    }

    async fn change_visibility(
        &self,
        queue: &str,
        receipt: &str,
        timeout: Duration,
    ) -> Result<(), BusError> {
        let url = self.url(queue)?;
        self.client
            .get()
            .await
            .change_message_visibility()
            .queue_url(url)
            .receipt_handle(receipt)
            .visibility_timeout(timeout.as_secs().min(43_200) as i32)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| service(queue, e))
    }

    async fn depth(&self, queue: &str) -> Result<QueueDepth, BusError> {
        crate::compute::count(crate::compute::Service::Sqs, 1);
        let url = self.url(queue)?;
        let out = self
            .client
            .get()
            .await
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .map_err(|e| service(queue, e))?;
        let get = |n: &QueueAttributeName| {
            out.attributes()
                .and_then(|a| a.get(n))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        Ok(QueueDepth {
            visible: get(&QueueAttributeName::ApproximateNumberOfMessages),
            in_flight: get(&QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        })
    }
}
