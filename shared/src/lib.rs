//! The common library every LeadFactory function, the CLI and the tests use.
//!
//! Organised by concept: [`domain`] values that validate on construction, [`config`] loaded once
//! from the environment, [`db`] (pool, migrations, tenant-scoped transactions), [`store`]
//! (objects), [`bus`] (queue hops), [`lambda`] (SQS batch and HTTP helpers), [`obs`] (logs, PII
//! hashing) and [`aws`] (SDK configuration).

pub mod aws;
pub mod bus;
pub mod campaign;
pub mod config;
pub mod db;
pub mod domain;
pub mod lambda;
pub mod links;
pub mod obs;
pub mod pipeline;
pub mod secrets;
pub mod store;
pub mod tls;
pub mod vendors;
pub mod webhook;
