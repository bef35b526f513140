//! qa-sampler: `RunFinished` (and an EventBridge schedule after the nightly) → `qa_samples`.

use lambda_runtime::{LambdaEvent, run, service_fn};
use serde_json::Value;

// One event at a time on at most one vCPU (256–512 MB): a single-threaded runtime has no
// cross-thread wake-ups and starts no worker threads (docs/performance.md).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::obs::init_tracing();
    let deps = shared::pipeline::Deps::from_env(qa_sampler::SENDS_TO).await?;
    let deps = &deps;
    run(service_fn(|event: LambdaEvent<Value>| async move {
        let work = qa_sampler::handle(
            deps,
            &event.payload,
            qa_sampler::DEFAULT_SAMPLE,
            chrono::Utc::now(),
        );
        let report = deps
            .compute
            .platform(&deps.pool, "qa-sampler", work)
            .await?;
        Ok::<_, lambda_runtime::Error>(serde_json::to_value(report)?)
    }))
    .await
}
