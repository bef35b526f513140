//! alerts: EventBridge schedule (every 5 minutes) → Slack.

use lambda_runtime::{LambdaEvent, run, service_fn};
use serde_json::Value;

// One event at a time on at most one vCPU (256–512 MB): a single-threaded runtime has no
// cross-thread wake-ups and starts no worker threads (docs/performance.md).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::obs::init_tracing();
    let deps = shared::pipeline::Deps::from_env(alerts::SENDS_TO).await?;
    let defaults = alerts::Thresholds::configured(&shared::config::ProcessEnv)?;
    let mut alerts = alerts::Alerts::new(deps.vendors.slack(&deps.policy)?, defaults);
    // Tenants' own channels: webhook secrets under the template's prefix.
    if let Ok(prefix) = std::env::var("LF_TENANT_SECRETS_PREFIX") {
        let sdk = shared::aws::LazySdk::new(std::env::var("AWS_ENDPOINT_URL").ok());
        let (vendors, policy) = (deps.vendors.clone(), deps.policy.clone());
        alerts = alerts.with_tenant_channels(alerts::TenantChannels {
            secrets: shared::aws::LazyClient::new(sdk, shared::secrets::client),
            prefix,
            make: Box::new(move |url| vendors.slack_webhook(url, &policy)),
        });
    }
    run(service_fn(|_: LambdaEvent<Value>| async {
        let work = alerts.run(&deps, chrono::Utc::now());
        let report = deps.compute.platform(&deps.pool, "alerts", work).await?;
        Ok::<_, lambda_runtime::Error>(serde_json::to_value(report)?)
    }))
    .await
}
