//! The template's EventBridge rules on its custom bus, as AWS runs them: the bus and each rule
//! (its event pattern as written) made in moto, whose EventBridge matches the events the
//! functions publish. moto delivers a match to an SQS target, not to a Lambda, so each rule's
//! target here is a queue of its own that a poller drains into the function, as EventBridge
//! invokes its targets asynchronously: each event once, retried (up to the rule's
//! `MaximumRetryAttempts`) while the invocation fails.

use std::sync::Arc;
use std::time::Duration;

use super::CloudError;
use super::lambda::Function;
use super::template::RuleDef;

/// How many times an event is handed to its function when invocations fail (EventBridge's
/// retry policy, bounded for the stand-in).
const ATTEMPTS: usize = 3;

fn events_err<E: std::error::Error + Send + Sync + 'static>(
    what: String,
) -> impl FnOnce(aws_sdk_eventbridge::error::SdkError<E>) -> CloudError {
    move |e| {
        CloudError::Service(format!(
            "{what}: {}",
            aws_sdk_eventbridge::error::DisplayErrorContext(e)
        ))
    }
}

/// Creates the bus `name` in moto; returns its ARN.
pub async fn create_bus(
    events: &aws_sdk_eventbridge::Client,
    name: &str,
) -> Result<String, CloudError> {
    let out = events
        .create_event_bus()
        .name(name)
        .send()
        .await
        .map_err(events_err(format!("creating event bus {name}")))?;
    Ok(out.event_bus_arn.unwrap_or_default())
}

/// One rule, made and targeted at its own queue.
pub struct Rule {
    pub def: RuleDef,
    pub queue_url: String,
    pub function: Arc<Function>,
}

/// Makes `def`'s rule on `bus` with its pattern, a queue for it (`<prefix>rule-<n>`) and the
/// rule's target on that queue.
pub async fn create_rule(
    events: &aws_sdk_eventbridge::Client,
    sqs: &aws_sdk_sqs::Client,
    def: &RuleDef,
    bus: &str,
    queue_name: &str,
    function: Arc<Function>,
) -> Result<Rule, CloudError> {
    let rule_name: String = def
        .name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    events
        .put_rule()
        .name(&rule_name)
        .event_bus_name(bus)
        .event_pattern(def.pattern.to_string())
        .send()
        .await
        .map_err(events_err(format!("creating rule {}", def.name)))?;
    let url = sqs
        .create_queue()
        .queue_name(queue_name)
        .send()
        .await
        .map_err(|e| {
            CloudError::Service(format!(
                "creating {queue_name}: {}",
                aws_sdk_sqs::error::DisplayErrorContext(e)
            ))
        })?
        .queue_url
        .unwrap_or_default();
    let arn = format!(
        "arn:aws:sqs:{}:{}:{queue_name}",
        super::REGION,
        super::ACCOUNT
    );
    let target = aws_sdk_eventbridge::types::Target::builder()
        .id("function")
        .arn(arn)
        .build()
        .map_err(|e| CloudError::Service(format!("target of {}: {e}", def.name)))?;
    events
        .put_targets()
        .rule(&rule_name)
        .event_bus_name(bus)
        .targets(target)
        .send()
        .await
        .map_err(events_err(format!("targeting rule {}", def.name)))?;
    Ok(Rule {
        def: def.clone(),
        queue_url: url,
        function,
    })
}

impl Rule {
    /// Hands each matched event to the function until `stop`.
    pub async fn run(
        self: Arc<Self>,
        sqs: aws_sdk_sqs::Client,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        loop {
            let received = tokio::select! {
                r = sqs.receive_message().queue_url(&self.queue_url).max_number_of_messages(10).wait_time_seconds(1).send() => r,
                _ = stop.changed() => return,
            };
            let messages = match received {
                Ok(out) => out.messages.unwrap_or_default(),
                Err(e) => {
                    tracing::warn!(rule = %self.def.name, error = %aws_sdk_sqs::error::DisplayErrorContext(e), "receiving matched events");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            for m in messages {
                self.deliver(m.body().unwrap_or_default()).await;
                if let Some(receipt) = m.receipt_handle() {
                    let _ = sqs
                        .delete_message()
                        .queue_url(&self.queue_url)
                        .receipt_handle(receipt)
                        .send()
                        .await;
                }
            }
        }
    }

    async fn deliver(&self, body: &str) {
        let event: serde_json::Value = match serde_json::from_str(body) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(rule = %self.def.name, error = %e, "a matched event that is not JSON");
                return;
            }
        };
        for attempt in 1..=ATTEMPTS {
            match self.function.invoke(&event).await {
                Ok(_) => return,
                Err(e) => {
                    tracing::warn!(rule = %self.def.name, attempt, error = %e, "the rule's target failed");
                }
            }
        }
    }
}
