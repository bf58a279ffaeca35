//! The deciding code: pure functions of their inputs, no filesystem, process, network or clock.
//! Nothing here imports `host`, `run`, `cli` or `daemon` (checked by `tests/architecture.rs`).

pub mod acme_policy;
pub mod catalog;
pub mod chains;
pub mod cloud;
pub mod config;
pub mod contracts;
pub mod daemon;
pub mod doctor;
pub mod envfile;
pub mod error;
pub mod escrow;
pub mod identity;
pub mod inputs;
pub mod metrics;
pub mod names;
pub mod naming;
pub mod nginx_reload;
pub mod observed;
pub mod oidc;
pub mod paths;
pub mod plan;
pub mod platform;
pub mod pubkey;
pub mod release;
pub mod render;
pub mod run;
pub mod secrets;
pub mod settings;
pub mod state;
pub mod times;
pub mod tls_probe;
pub mod tls_profile;
pub mod unitfile;
pub mod validate;
