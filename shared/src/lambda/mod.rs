//! Helpers shared by every function's handler: SQS batches with partial failure, and HTTP
//! request/response plumbing for API Gateway HTTP API and function-URL events.

pub mod http;
mod sqs_batch;

pub use sqs_batch::{BatchError, MessageError, process_sqs_batch};
