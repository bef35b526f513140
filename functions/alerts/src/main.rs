//! alerts: EventBridge schedule (every 5 minutes) → Slack.

use std::sync::Arc;

use lambda_runtime::{LambdaEvent, run, service_fn};
use serde_json::Value;
use shared::vendors::CallSink;

// One event at a time on at most one vCPU (256–512 MB): a single-threaded runtime has no
// cross-thread wake-ups and starts no worker threads (docs/performance.md).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::obs::init_tracing();
    let deps = shared::pipeline::Deps::from_env(alerts::SENDS_TO).await?;
    let sink: Arc<dyn CallSink> = deps.sink.clone();
    let mut alerts = alerts::Alerts::new(
        deps.vendors.slack(&sink, &deps.policy)?,
        alerts::Thresholds::default(),
    );
    // Tenants' own channels: webhook secrets under the template's prefix.
    if let Ok(prefix) = std::env::var("LF_TENANT_SECRETS_PREFIX") {
        let sdk = shared::aws::LazySdk::new(std::env::var("AWS_ENDPOINT_URL").ok());
        let (vendors, policy, sink) = (deps.vendors.clone(), deps.policy.clone(), sink.clone());
        alerts = alerts.with_tenant_channels(alerts::TenantChannels {
            secrets: shared::aws::LazyClient::new(sdk, shared::secrets::client),
            prefix,
            make: Box::new(move |url| vendors.slack_webhook(url, &sink, &policy)),
        });
    }
    run(service_fn(|_: LambdaEvent<Value>| async {
        let report = alerts.run(&deps, chrono::Utc::now()).await?;
        Ok::<_, lambda_runtime::Error>(serde_json::to_value(report)?)
    }))
    .await
}
