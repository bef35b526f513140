//! The operator CLI's library: the local pipeline driver and campaign files, shared by the
//! `leadfactory` binary and the end-to-end tests.

pub mod campaign;
pub mod cloud;
pub mod dashboard;
pub mod dlq;
pub mod gateway;
pub mod local;
pub mod provision;
pub mod stages;
pub mod status;
