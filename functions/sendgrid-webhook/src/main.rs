//! sendgrid-webhook: HTTP (API Gateway HTTP API) → email events, email state, suppressions.

use aws_lambda_events::event::apigw::ApiGatewayV2httpRequest;
use lambda_runtime::{LambdaEvent, run, service_fn};

// One event at a time on at most one vCPU (256–512 MB): a single-threaded runtime has no
// cross-thread wake-ups and starts no worker threads (docs/performance.md).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::obs::init_tracing();
    let deps = sendgrid_webhook::WebhookDeps::from_env().await?;
    let meter = shared::compute::Meter::from_source(&shared::config::ProcessEnv)?
        .flushing_after(shared::compute::HTTP_FLUSH_AFTER);
    run(service_fn(
        |event: LambdaEvent<ApiGatewayV2httpRequest>| async {
            let work = sendgrid_webhook::handler(&deps, event.payload);
            Ok::<_, lambda_runtime::Error>(
                meter.platform(&deps.pool, "sendgrid-webhook", work).await,
            )
        },
    ))
    .await
}
