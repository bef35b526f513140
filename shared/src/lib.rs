//! The common library every LeadFactory function, the CLI and the tests use.
//!
//! Organised by concept: [`domain`] values that validate on construction, [`config`] loaded once
//! from the environment, [`db`] (pool, migrations, tenant-scoped transactions), [`store`]
//! (objects), [`bus`] (queue hops), [`lambda`] (HTTP helpers and the start-up error), [`obs`]
//! (logs, PII hashing), [`events`] (domain events on the EventBridge bus) and [`aws`] (SDK
//! configuration); [`analytics`] and [`erasure`] are the
//! queries and the erasure that the functions, the ops API and the CLI all call.

pub mod analytics;
pub mod aws;
pub mod backup;
pub mod bus;
pub mod campaign;
pub mod compute;
pub mod config;
pub mod db;
pub mod domain;
pub mod erasure;
pub mod events;
pub mod lambda;
pub mod links;
pub mod obs;
pub mod pipeline;
pub mod secrets;
pub mod store;
pub mod subject;
pub mod tls;
pub mod vendors;
pub mod webhook;
