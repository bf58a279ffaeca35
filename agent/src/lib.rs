//! agentkeys-hostd: the on-host agent of an AgentKeys broker host.
//!
//! Deciding (pure, no effect module imported — `tests/architecture.rs` checks it): `acme_policy`,
//! `catalog`, `chains`, `config`, `contracts`, `daemon::{options, record, schedule}`, `doctor`,
//! `envfile`, `error`, `failpoints`, `identity`, `metrics`, `naming`, `observed`, `paths`, `plan`,
//! `release`, `render`, `secrets`, `settings`, `unitfile`, `validate`.
//! Doing (effects): `host` (filesystem, accounts, systemd, nginx, ACME, DNS, health, …), `observe`,
//! `apply`, `execute`, `engine`, `tls`, `state`, `report`, `daemon` (its loop), `cli`.

pub mod acme_policy;
pub mod apply;
pub mod catalog;
pub mod chains;
pub mod cli;
pub mod clock;
pub mod config;
pub mod contracts;
pub mod daemon;
pub mod doctor;
pub mod engine;
pub mod envfile;
pub mod error;
pub mod execute;
pub mod failpoints;
pub mod host;
pub mod identity;
pub mod metrics;
pub mod naming;
pub mod observe;
pub mod observed;
pub mod paths;
pub mod plan;
pub mod release;
pub mod render;
pub mod report;
pub mod run;
pub mod secrets;
pub mod settings;
pub mod state;
pub mod tls;
pub mod unitfile;
pub mod validate;
