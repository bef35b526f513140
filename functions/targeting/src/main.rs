//! targeting: EventBridge schedule (nightly) → sourcing queue.

use lambda_runtime::{LambdaEvent, run, service_fn};
use serde_json::Value;

// One event at a time on at most one vCPU (256–512 MB): a single-threaded runtime has no
// cross-thread wake-ups and starts no worker threads (docs/performance.md).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::obs::init_tracing();
    let deps = shared::pipeline::Deps::from_env(targeting::SENDS_TO).await?;
    run(service_fn(|event: LambdaEvent<Value>| async {
        let work = targeting::handler(&deps, event.payload);
        let report = deps.compute.platform(&deps.pool, "targeting", work).await?;
        Ok::<_, lambda_runtime::Error>(serde_json::to_value(report)?)
    }))
    .await
}
