//! HTTP request/response plumbing shared by the HTTP functions (API Gateway HTTP API and
//! function-URL events). SQS batches with partial failure are the pipeline runner's
//! (`shared::pipeline::handle_sqs`).

pub mod http;
