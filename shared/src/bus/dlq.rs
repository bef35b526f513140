//! Dead-letter queues: look at what is in them, and move messages back to their source queue. Works on any `Bus` (SQS in AWS or moto, the in-process bus locally). Redriven messages
//! are safe: every stage is idempotent per message key.

use std::time::Duration;

use super::{Bus, BusError, Envelope, MAX_BATCH_ENTRIES, Queue};
use serde::Serialize;

/// One dead-lettered message, as an operator sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadLetter {
    pub message_id: String,
    pub receive_count: u32,
    pub tenant: Option<String>,
    pub run: Option<String>,
    pub idempotency_key: Option<String>,
    pub trace_id: Option<String>,
    /// Why it could not even be read, when that is the reason it failed.
    pub parse_error: Option<String>,
    pub body_excerpt: String,
    pub body: String,
}

/// Reads up to `max` messages from `queue`'s DLQ without removing them. Each received message
/// stays invisible until the listing is complete (so repeated receives reach the rest rather
/// than the same few), then all are made visible again at once.
pub async fn peek(bus: &dyn Bus, queue: Queue, max: usize) -> Result<Vec<DeadLetter>, BusError> {
    let dlq = queue.dlq();
    let mut out = Vec::new();
    let mut receipts = Vec::new();
    let mut seen = std::collections::HashSet::new();
    while out.len() < max {
        let got = bus
            .receive(dlq, (max - out.len()).min(MAX_BATCH_ENTRIES))
            .await?;
        if got.is_empty() {
            break;
        }
        for d in got {
            receipts.push(d.receipt.clone());
            if !seen.insert(d.message_id.clone()) {
                continue;
            }
            let parsed = Envelope::<serde_json::Value>::parse(&d.body);
            out.push(DeadLetter {
                message_id: d.message_id,
                receive_count: d.receive_count,
                tenant: parsed.as_ref().ok().map(|e| e.tenant_id.to_string()),
                run: parsed
                    .as_ref()
                    .ok()
                    .and_then(|e| e.run_id)
                    .map(|r| r.to_string()),
                idempotency_key: parsed.as_ref().ok().map(|e| e.idempotency_key.clone()),
                trace_id: parsed.as_ref().ok().map(|e| e.trace_id.clone()),
                parse_error: parsed.err().map(|e| e.to_string()),
                body_excerpt: d.body.chars().take(200).collect(),
                body: d.body,
            });
        }
    }
    for r in &receipts {
        bus.change_visibility(dlq, r, Duration::ZERO).await?;
    }
    Ok(out)
}

/// Moves up to `max` messages from `queue`'s DLQ back to `queue`, a batch at a time: each batch
/// is sent before it is deleted from the DLQ, so a failure part-way loses nothing.
pub async fn redrive(bus: &dyn Bus, queue: Queue, max: usize) -> Result<usize, BusError> {
    let dlq = queue.dlq();
    let mut moved = 0;
    while moved < max {
        let batch = bus
            .receive(dlq, (max - moved).min(MAX_BATCH_ENTRIES))
            .await?;
        if batch.is_empty() {
            break;
        }
        let bodies: Vec<String> = batch.iter().map(|d| d.body.clone()).collect();
        bus.send_batch(queue.name(), &bodies).await?;
        for d in &batch {
            bus.delete(dlq, &d.receipt).await?;
        }
        moved += batch.len();
    }
    Ok(moved)
}
