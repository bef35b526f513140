//! What every function's entry shares: HTTP request/response plumbing for the HTTP functions
//! (API Gateway HTTP API and function-URL events), and the start-up error. SQS batches with partial failure are the pipeline runner's
//! (`shared::pipeline::handle_sqs`).

pub mod http;
mod start;

pub use start::{StartError, file_or_embedded};
