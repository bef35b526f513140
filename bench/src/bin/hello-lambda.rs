//! The baseline for cold starts: the smallest `lambda_runtime` function (echo), built with the
//! same release profile as the real functions.

use lambda_runtime::{LambdaEvent, run, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    run(service_fn(|e: LambdaEvent<Value>| async move {
        Ok::<_, lambda_runtime::Error>(e.payload)
    }))
    .await
}
