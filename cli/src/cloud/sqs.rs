//! The template's SQS event sources, as Lambda's event source mappings run them: batches of up to
//! `BatchSize` gathered for up to `MaximumBatchingWindowInSeconds`, at most
//! `MaximumConcurrency` invocations at once; with `ReportBatchItemFailures` the successes are
//! deleted and the failures left to reappear after the visibility timeout (and moto's redrive
//! moves a message to its DLQ after `maxReceiveCount` receives); an invocation that fails as a
//! whole (error, timeout, killed process) leaves its whole batch.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, Message, MessageSystemAttributeName, QueueAttributeName,
};

use super::lambda::Function;
use super::schedule::Clock;
use super::template::SqsSource;

/// SQS's largest receive.
const MAX_RECEIVE: usize = 10;
/// How long one poll waits for a first message (SQS's long poll; short, so shutdown is quick).
const LONG_POLL_SECS: i32 = 1;

/// One event source mapping.
pub struct Mapping {
    pub source: SqsSource,
    pub queue_url: String,
    pub queue_arn: String,
    pub visibility_timeout: Duration,
    pub function: Arc<Function>,
    pub sqs: aws_sdk_sqs::Client,
    pub clock: Clock,
    /// Chaos: every message is delivered twice (made visible again after its first success).
    pub deliver_twice: bool,
    delivered_once: Mutex<HashSet<String>>,
}

impl Mapping {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        source: SqsSource,
        queue_url: String,
        queue_arn: String,
        visibility_timeout: Duration,
        function: Arc<Function>,
        sqs: aws_sdk_sqs::Client,
        clock: Clock,
        deliver_twice: bool,
    ) -> Mapping {
        Mapping {
            source,
            queue_url,
            queue_arn,
            visibility_timeout,
            function,
            sqs,
            clock,
            deliver_twice,
            delivered_once: Mutex::new(HashSet::new()),
        }
    }

    /// Polls until `stop` is set, invoking the function with each batch.
    pub async fn run(self: Arc<Self>, stop: tokio::sync::watch::Receiver<bool>) {
        let slots = Arc::new(tokio::sync::Semaphore::new(
            self.source.max_concurrency.max(1),
        ));
        loop {
            if *stop.borrow() {
                return;
            }
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            let batch = self.gather(&stop).await;
            if batch.is_empty() {
                continue;
            }
            let me = self.clone();
            tokio::spawn(async move {
                me.deliver(batch).await;
                drop(permit);
            });
        }
    }

    async fn receive(&self, max: usize, wait: i32) -> Vec<Message> {
        let r = self
            .sqs
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(i32::try_from(max.clamp(1, MAX_RECEIVE)).unwrap_or(10))
            .wait_time_seconds(wait)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await;
        match r {
            Ok(out) => out.messages.unwrap_or_default(),
            Err(e) => {
                tracing::warn!(queue = %self.queue_url, error = %aws_sdk_sqs::error::DisplayErrorContext(e), "receive failed");
                tokio::time::sleep(Duration::from_millis(500)).await;
                Vec::new()
            }
        }
    }

    /// A batch: the first messages, then more until the batch is full or its window passed.
    async fn gather(&self, stop: &tokio::sync::watch::Receiver<bool>) -> Vec<Message> {
        let size = self.source.batch_size.max(1);
        let mut batch = Vec::new();
        while batch.is_empty() {
            if *stop.borrow() {
                return batch;
            }
            batch = self.receive(size, LONG_POLL_SECS).await;
        }
        let window = self.clock.real(self.source.window);
        let until = tokio::time::Instant::now() + window;
        while batch.len() < size && tokio::time::Instant::now() < until {
            let more = self.receive(size - batch.len(), 0).await;
            if more.is_empty() {
                tokio::time::sleep(Duration::from_millis(50).min(window)).await;
            }
            batch.extend(more);
        }
        batch
    }

    fn event(&self, batch: &[Message]) -> serde_json::Value {
        let records: Vec<serde_json::Value> = batch
            .iter()
            .map(|m| {
                let attributes: serde_json::Map<String, serde_json::Value> = m
                    .attributes()
                    .map(|a| {
                        a.iter()
                            .map(|(k, v)| {
                                (k.as_str().to_owned(), serde_json::Value::from(v.as_str()))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                serde_json::json!({
                    "messageId": m.message_id(),
                    "receiptHandle": m.receipt_handle(),
                    "body": m.body(),
                    "attributes": attributes,
                    "messageAttributes": {},
                    "md5OfBody": m.md5_of_body(),
                    "eventSource": "aws:sqs",
                    "eventSourceARN": self.queue_arn,
                    "awsRegion": super::REGION,
                })
            })
            .collect();
        serde_json::json!({ "Records": records })
    }

    async fn deliver(&self, batch: Vec<Message>) {
        let outcome = self.function.invoke(&self.event(&batch)).await;
        let failed: HashSet<String> = match &outcome {
            Ok(resp) if self.source.report_failures => resp["batchItemFailures"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|f| f["itemIdentifier"].as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
            Ok(_) => HashSet::new(),
            Err(_) => batch
                .iter()
                .filter_map(|m| m.message_id().map(str::to_owned))
                .collect(),
        };
        let mut done = Vec::new();
        let mut again = Vec::new();
        for m in &batch {
            let id = m.message_id().unwrap_or_default().to_owned();
            if failed.contains(&id) {
                again.push((m, self.clock.real(self.visibility_timeout)));
            } else if self.deliver_twice && self.first_delivery(&id) {
                again.push((m, Duration::ZERO));
            } else {
                done.push(m);
            }
        }
        self.delete(&done).await;
        // Failures reappear after the visibility timeout; on a fast clock, sooner by its factor.
        for (m, after) in again {
            if self.clock.factor > 1.0 || after.is_zero() {
                let _ = self
                    .sqs
                    .change_message_visibility()
                    .queue_url(&self.queue_url)
                    .receipt_handle(m.receipt_handle().unwrap_or_default())
                    .visibility_timeout(i32::try_from(after.as_secs()).unwrap_or(0))
                    .send()
                    .await;
            }
        }
    }

    fn first_delivery(&self, id: &str) -> bool {
        self.delivered_once
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id.to_owned())
    }

    async fn delete(&self, done: &[&Message]) {
        for chunk in done.chunks(MAX_RECEIVE) {
            let entries: Vec<DeleteMessageBatchRequestEntry> = chunk
                .iter()
                .enumerate()
                .filter_map(|(i, m)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(m.receipt_handle().unwrap_or_default())
                        .build()
                        .ok()
                })
                .collect();
            if let Err(e) = self
                .sqs
                .delete_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
            {
                tracing::warn!(queue = %self.queue_url, error = %aws_sdk_sqs::error::DisplayErrorContext(e), "delete failed");
            }
        }
    }
}

/// Visible plus in-flight messages of a queue.
pub async fn outstanding(sqs: &aws_sdk_sqs::Client, url: &str) -> Result<u64, String> {
    let out = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
        .send()
        .await
        .map_err(|e| aws_sdk_sqs::error::DisplayErrorContext(e).to_string())?;
    let attrs = out.attributes.unwrap_or_default();
    Ok(attrs.values().filter_map(|v| v.parse::<u64>().ok()).sum())
}
