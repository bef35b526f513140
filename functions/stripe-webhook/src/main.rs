//! stripe-webhook: HTTP (API Gateway HTTP API) → purchases, refunds, fulfilment queue.

use aws_lambda_events::event::apigw::ApiGatewayV2httpRequest;
use lambda_runtime::{LambdaEvent, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::obs::init_tracing();
    let deps = stripe_webhook::WebhookDeps::from_env().await?;
    run(service_fn(
        |event: LambdaEvent<ApiGatewayV2httpRequest>| async {
            Ok::<_, lambda_runtime::Error>(stripe_webhook::handler(&deps, event.payload).await)
        },
    ))
    .await
}
