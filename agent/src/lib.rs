//! agentkeys-hostd: the on-host agent of an AgentKeys broker host.
//!
//! Deciding (pure): `config`, `envfile`, `naming`, `identity`, `settings`, `secrets`, `catalog`,
//! `chains`, `render`, `observed`, `plan`. Doing (effects): `host`, `observe`, `apply`, `engine`, `cli`.

pub mod acme_policy;
pub mod apply;
pub mod catalog;
pub mod chains;
pub mod cli;
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
pub mod secrets;
pub mod settings;
pub mod state;
pub mod tls;
pub mod unitfile;
pub mod validate;
