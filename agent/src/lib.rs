//! agentkeys-hostd: the on-host agent of an AgentKeys broker host. The tree is the architecture:
//!
//! * `decide` — the deciding code, pure functions of their inputs: naming and every derived name,
//!   identity, config, env files, settings, the service catalog and upstream contracts, rendering,
//!   the plan, secrets, releases, the certificate policy (renewal, next step, ledger, ARI cache),
//!   the run's and the daemon's decisions, doctor's and oidc's verdicts, metrics. It imports
//!   nothing from the other four and touches no file, process, network, clock or randomness.
//! * `host` — the effects, each bound to a filesystem root: files, accounts, systemd (behind the
//!   `Manager` seam), nginx, ACME and its store, DNS facts, health probes, releases on disk,
//!   observing the host, applying a plan, executing its jobs, the certificate step, hostd's
//!   state, the clock. Uses only `decide`.
//! * `run` — the workflows as a library: `run::reconcile(host, request) → RunReport`, doctor's
//!   preflight, status. Uses `decide` and `host`.
//! * `daemon` — the long-running loop: events, timers, the record; each run through `run`.
//! * `cli` — one file per command: flags in, printing out.
//!
//! `tests/architecture.rs` checks both rules: what `decide` may touch, and that each layer uses
//! only those listed before it (so there is no import cycle).

pub mod cli;
pub mod daemon;
pub mod decide;
pub mod host;
pub mod run;
