//! delivery: SQS (delivery and fulfilment queues) → SendGrid; a morning schedule releases the
//! capped backlog onto the delivery queue.

use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{LambdaEvent, run, service_fn};
use serde_json::Value;

// One event at a time on at most one vCPU (256–512 MB): a single-threaded runtime has no
// cross-thread wake-ups and starts no worker threads (docs/performance.md).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::obs::init_tracing();
    let source = shared::secrets::from_env().await?;
    let deps = shared::pipeline::Deps::from_source(&source, delivery::SENDS_TO)?;
    let mailer = Arc::new(delivery::Mailer::from_source(&deps, &source)?);
    let outreach = delivery::Delivery::from(mailer.clone());
    let fulfilment = delivery::Fulfilment::from(mailer);
    let (deps, outreach, fulfilment) = (&deps, &outreach, &fulfilment);
    run(service_fn(|event: LambdaEvent<Value>| async move {
        let deadline = shared::pipeline::work_deadline(event.context.deadline);
        let payload = event.payload;
        if payload.get("Records").is_none() {
            let work =
                delivery::release_backlog(deps, deps.bus.as_ref(), chrono::Utc::now().date_naive());
            let released = deps.compute.platform(&deps.pool, "delivery", work).await?;
            return Ok::<_, lambda_runtime::Error>(serde_json::to_value(released)?);
        }
        let sqs: SqsEvent = serde_json::from_value(payload)?;
        let (f, o): (Vec<_>, Vec<_>) = sqs.records.into_iter().partition(|r| {
            delivery::route(r.event_source_arn.as_deref()) == delivery::Route::Fulfilment
        });
        let mut resp = SqsBatchResponse::default();
        if !o.is_empty() {
            let mut e = SqsEvent::default();
            e.records = o;
            let r = shared::pipeline::handle_sqs(outreach, deps, e, deadline).await;
            resp.batch_item_failures.extend(r.batch_item_failures);
        }
        if !f.is_empty() {
            let mut e = SqsEvent::default();
            e.records = f;
            let r = shared::pipeline::handle_sqs(fulfilment, deps, e, deadline).await;
            resp.batch_item_failures.extend(r.batch_item_failures);
        }
        Ok(serde_json::to_value(resp)?)
    }))
    .await
}
