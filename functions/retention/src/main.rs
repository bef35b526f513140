//! retention: EventBridge schedule (daily) → purges past their periods.

use lambda_runtime::{LambdaEvent, run, service_fn};
use serde_json::Value;

// One event at a time on at most one vCPU (256–512 MB): a single-threaded runtime has no
// cross-thread wake-ups and starts no worker threads (docs/performance.md).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::obs::init_tracing();
    let deps = shared::pipeline::Deps::from_env(retention::SENDS_TO).await?;
    let periods = retention::Periods::default();
    run(service_fn(|_: LambdaEvent<Value>| async {
        let work = retention::purge(&deps, &periods, chrono::Utc::now());
        let report = deps.compute.platform(&deps.pool, "retention", work).await?;
        Ok::<_, lambda_runtime::Error>(serde_json::to_value(report)?)
    }))
    .await
}
