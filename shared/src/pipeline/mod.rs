//! What the stages share: the payloads each hop carries, the batch runner that gives every
//! SQS-triggered stage idempotency, set-based writes and partial batch failure, and the
//! dependencies a function builds once per container.

pub mod budget;
mod deps;
mod error;
pub mod llm_log;
pub mod messages;
pub mod resend;
mod runner;
pub mod runs;
mod stage;

pub use deps::{DEFAULT_MAX_RECEIVE_COUNT, Deps, FetchPolicy};
pub use error::StageError;
pub use runner::{
    AnyStage, BatchOutcome, EventInfo, Incoming, MAX_STORE_MARGIN, MIN_STORE_MARGIN, Outgoing,
    StageHandler, StageItem, WorkError, handle_sqs, process_batch, process_batch_until,
    serve_stage, work_deadline,
};
pub use stage::Stage;
