//! ops-api: HTTP (API Gateway HTTP API, `/v1/…`) → tenant-scoped operations.

use std::sync::Arc;

use aws_lambda_events::event::apigw::ApiGatewayV2httpRequest;
use lambda_runtime::{LambdaEvent, run, service_fn};

// One event at a time on at most one vCPU (256–512 MB): a single-threaded runtime has no
// cross-thread wake-ups and starts no worker threads (docs/performance.md).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::obs::init_tracing();
    let deps = shared::pipeline::Deps::from_env(ops_api::SENDS_TO).await?;
    let api = ops_api::OpsApi {
        pool: deps.pool.clone(),
        bus: deps.bus.clone(),
        store: deps.store.clone(),
        queues: ops_api::wired_queues(),
    };
    let api = Arc::new(api);
    let meter = Arc::new(
        shared::compute::Meter::from_source(&shared::config::ProcessEnv)?
            .flushing_after(shared::compute::HTTP_FLUSH_AFTER),
    );
    run(service_fn(|event: LambdaEvent<ApiGatewayV2httpRequest>| {
        let (api, meter) = (api.clone(), meter.clone());
        async move {
            let work = api.handler(event.payload);
            Ok::<_, lambda_runtime::Error>(meter.platform(&api.pool, "ops-api", work).await)
        }
    }))
    .await
}
