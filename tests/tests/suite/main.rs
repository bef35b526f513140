//! The integration and end-to-end tests, one module per area, in one binary so the suite links
//! once (zero-to-production's `tests/api/main.rs`). Each module starts the services it needs
//! through `testkit`; the PostgreSQL server and moto are started once for the whole binary.
//! `tests/tests/leaks.rs` is its own binary: it installs the process's global log subscriber,
//! as a function's `main` does, to see every line from every thread.

mod alerts;
mod analytics;
mod backup;
mod bus;
mod cloud;
mod compute;
mod contract;
mod contracts;
mod dashboard;
mod data_map;
mod db;
mod dedup;
mod dlq;
mod domain_events;
mod events;
mod funnel;
mod ops_api;
mod pipeline;
mod plans;
mod qa;
mod redrive;
mod retention;
mod runbook;
mod secrets;
mod sendgrid_webhook;
mod store;
mod stripe_webhook;
mod template;
mod vendors;
