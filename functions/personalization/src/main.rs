//! personalization: SQS (personalization queue) → delivery queue.

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{LambdaEvent, run, service_fn};

// One event at a time on at most one vCPU (256–512 MB): a single-threaded runtime has no
// cross-thread wake-ups and starts no worker threads (docs/performance.md).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::obs::init_tracing();
    let source = shared::secrets::from_env().await?;
    let deps = shared::pipeline::Deps::from_source(&source, personalization::SENDS_TO)?;
    let stage = personalization::Personalization::from_source(&deps, &source)?;
    let (stage, deps) = (&stage, &deps);
    run(service_fn(|event: LambdaEvent<SqsEvent>| async move {
        let deadline = shared::pipeline::work_deadline(event.context.deadline);
        Ok::<_, lambda_runtime::Error>(
            shared::pipeline::handle_sqs(stage, deps, event.payload, deadline).await,
        )
    }))
    .await
}
