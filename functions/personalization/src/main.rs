//! personalization: SQS (personalization queue) → delivery queue.

// One event at a time on at most one vCPU (256–512 MB): a single-threaded runtime has no
// cross-thread wake-ups and starts no worker threads (docs/performance.md).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::pipeline::serve_stage(
        personalization::SENDS_TO,
        personalization::Personalization::from_source,
    )
    .await
}
