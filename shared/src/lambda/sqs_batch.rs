//! An SQS batch becomes one result per message. Failed messages are reported by id in
//! `batchItemFailures`, so SQS redelivers only them (and, after `maxReceiveCount`, moves them to
//! the DLQ); the rest of the batch is deleted. One poison message never sinks its batch.

use std::future::Future;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use futures_util::StreamExt;

/// Why one message failed. Both kinds are reported as failures; the distinction is for logs and
/// metrics: `Permanent` will fail again however often it is retried (it ends in the DLQ),
/// `Transient` may succeed on redelivery.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    #[error("permanent: {0}")]
    Permanent(String),
    #[error("transient: {0}")]
    Transient(String),
}

/// The batch as a whole could not be processed.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("a message without messageId failed; the whole batch must be retried")]
    MissingMessageId,
}

/// Runs `handle` on every message, up to `concurrency` at a time, and reports the failures.
pub async fn process_sqs_batch<F, Fut>(
    event: SqsEvent,
    concurrency: usize,
    handle: F,
) -> Result<SqsBatchResponse, BatchError>
where
    F: Fn(SqsMessage) -> Fut,
    Fut: Future<Output = Result<(), MessageError>>,
{
    let results: Vec<(Option<String>, Result<(), MessageError>)> =
        futures_util::stream::iter(event.records)
            .map(|msg| {
                let id = msg.message_id.clone();
                let fut = handle(msg);
                async move { (id, fut.await) }
            })
            .buffer_unordered(concurrency.max(1))
            .collect()
            .await;

    let mut response = SqsBatchResponse::default();
    for (id, result) in results {
        if let Err(err) = result {
            let Some(id) = id else {
                tracing::error!(error = %err, "message without messageId failed");
                return Err(BatchError::MissingMessageId);
            };
            tracing::warn!(message_id = %id, error = %err, "message failed; reported for redelivery");
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id;
            response.batch_item_failures.push(failure);
        }
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(bodies: &[&str]) -> SqsEvent {
        let mut e = SqsEvent::default();
        e.records = bodies
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let mut m = SqsMessage::default();
                m.message_id = Some(format!("id-{i}"));
                m.body = Some((*b).to_owned());
                m
            })
            .collect();
        e
    }

    #[tokio::test]
    async fn one_failing_message_is_the_only_failure_reported() {
        let resp = process_sqs_batch(event(&["ok", "poison", "ok", "ok"]), 4, |m| async move {
            match m.body.as_deref() {
                Some("poison") => Err(MessageError::Permanent("cannot parse".into())),
                _ => Ok(()),
            }
        })
        .await
        .unwrap();
        let ids: Vec<_> = resp
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        assert_eq!(ids, vec!["id-1"]);
    }

    #[tokio::test]
    async fn all_succeeding_reports_nothing_and_serialises_as_sqs_expects() {
        let resp = process_sqs_batch(event(&["a", "b"]), 1, |_| async { Ok(()) })
            .await
            .unwrap();
        assert!(resp.batch_item_failures.is_empty());
        let failed = process_sqs_batch(event(&["x"]), 1, |_| async {
            Err(MessageError::Transient("db".into()))
        })
        .await
        .unwrap();
        let json = serde_json::to_value(&failed).unwrap();
        assert_eq!(json["batchItemFailures"][0]["itemIdentifier"], "id-0");
    }

    #[tokio::test]
    async fn a_failure_without_message_id_fails_the_batch() {
        let mut e = event(&["x"]);
        e.records[0].message_id = None;
        let r = process_sqs_batch(e, 1, |_| async {
            Err(MessageError::Permanent("bad".into()))
        })
        .await;
        assert!(matches!(r, Err(BatchError::MissingMessageId)));
    }
}
