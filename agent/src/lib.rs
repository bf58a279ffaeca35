//! agentkeys-hostd: the on-host agent of an AgentKeys broker host. The tree is the architecture:
//!
//! * `decide` — the deciding code, pure functions of their inputs: naming, identity, config, env
//!   files, settings, the service catalog and upstream contracts, rendering, the plan, secrets,
//!   releases, the certificate policy, the run's and the daemon's decisions, doctor's verdicts,
//!   metrics. It imports nothing from the other four (`tests/architecture.rs` checks it).
//! * `host` — the effects, each bound to a filesystem root: files, accounts, systemd (behind the
//!   `Manager` seam), nginx, ACME, DNS, health probes, releases on disk, observing the host,
//!   applying a plan, executing its jobs, the certificate step, hostd's state, the clock.
//! * `run` — one converge as a library: `run::reconcile(host, request) → RunReport`.
//! * `cli` — one file per command: flags in, printing out.
//! * `daemon` — the long-running loop: events, timers, the record; each run through `run`.

pub mod cli;
pub mod daemon;
pub mod decide;
pub mod host;
pub mod run;
