//! backup: EventBridge schedules — daily 04:00 UTC, every table to `backups/<day>/`; monthly,
//! `{"drill": true}`, a restore drill of the newest backup.

use lambda_runtime::{LambdaEvent, run, service_fn};
use serde_json::Value;

// One event at a time on at most one vCPU: a single-threaded runtime (docs/performance.md).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::obs::init_tracing();
    let deps = shared::pipeline::Deps::from_env(backup::SENDS_TO).await?;
    let deps = &deps;
    run(service_fn(|event: LambdaEvent<Value>| async move {
        let work = async {
            if backup::is_drill(&event.payload) {
                let report = backup::drill(&deps.pool, deps.store.as_ref()).await?;
                return Ok::<_, lambda_runtime::Error>(serde_json::to_value(report)?);
            }
            let day = backup::day_of(&event.payload, chrono::Utc::now());
            let report = backup::run(&deps.pool, deps.store.as_ref(), day).await?;
            Ok(serde_json::to_value(report)?)
        };
        deps.compute.platform(&deps.pool, "backup", work).await
    }))
    .await
}
