//! analytics: `RunFinished` and EventBridge schedules (hourly, after the nightly) → `funnel_daily`.

use lambda_runtime::{LambdaEvent, run, service_fn};
use serde_json::Value;

// One event at a time on at most one vCPU (256–512 MB): a single-threaded runtime has no
// cross-thread wake-ups and starts no worker threads (docs/performance.md).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::obs::init_tracing();
    let deps = shared::pipeline::Deps::from_env(analytics::SENDS_TO).await?;
    let deps = &deps;
    run(service_fn(|event: LambdaEvent<Value>| async move {
        let today = chrono::Utc::now().date_naive();
        let work = analytics::handle(&deps.pool, &event.payload, today);
        let report = deps.compute.platform(&deps.pool, "analytics", work).await?;
        Ok::<_, lambda_runtime::Error>(serde_json::to_value(report)?)
    }))
    .await
}
