//! One converge, as a library: the command line and the daemon both call [`reconcile`] with the
//! host it acts on and what was asked, and get a typed [`RunReport`] back.
//! Phases: decide (nothing written on bad input) → release → lock → observe/plan → escrow →
//! pending marker → files → systemd jobs → health gate → rollback → certificates (re-planned) →
//! retention → record.
//! The run's own decisions are the pure functions of [`decide`].

mod escrow_step;
pub(crate) mod escrow_view;
mod finish;
mod phases;
pub(crate) mod preflight;
pub mod prepare;
pub mod report;
pub(crate) mod status;
mod steps;
#[cfg(test)]
pub(crate) mod testhost;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::decide::catalog::Service;
use crate::decide::error::exit;
use crate::decide::plan;
use crate::decide::run::{self as decide, RunResult};
use crate::host::accounts::AccountDb;
use crate::host::clock::Clock;
use crate::host::fs::Root;
use crate::host::health::{self, Verdict};
use crate::host::systemd::Manager;
use crate::host::tls::HostOutcome;
use finish::{Finish, finish};
use phases::{
    Converged, binary_hashes, certificate_step, mark_pending, owe_nginx_reload, read_state, release_step,
    roll_back_if_failed, take_lock, verify_release,
};
use prepare::Request;
use report::Summary;

/// How long the real health gate retries before it declares a service down.
pub(crate) const HEALTH_BUDGET: Duration = Duration::from_secs(30);

/// The health gate over HTTP on loopback, as a host runs it.
pub(crate) fn health_gate(services: &[&Service]) -> Vec<Verdict> {
    health::gate(HEALTH_BUDGET, services)
}

/// What a run acts on and with.
#[allow(missing_debug_implementations)] // trait objects and a runtime
pub struct Host<'a, M: Manager> {
    pub root: &'a Root,
    pub accounts: &'a dyn AccountDb,
    /// Connects to the system manager, after the input is checked and the lock taken; `None`:
    /// files only (`--no-systemd`, or another root).
    pub systemd: Option<&'a dyn Fn() -> anyhow::Result<M>>,
    /// Probes the services after their jobs (see [`health_gate`]).
    pub health: &'a dyn Fn(&[&Service]) -> Vec<Verdict>,
    pub clock: &'a dyn Clock,
    pub rt: &'a tokio::runtime::Runtime,
}

/// Where a release comes from.
#[derive(Debug, Clone)]
pub enum ReleaseSource {
    /// A directory or archive on this machine, optionally pinned.
    Local { path: String, sha256: Option<String> },
    /// An `https://` archive, pinned by its SHA-256 or by the host's release keys (or both); `ca`
    /// replaces the system roots.
    Url { url: String, sha256: Option<String>, ca: Option<PathBuf> },
}

/// What a run was asked to do.
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub request: Request,
    pub release: Option<ReleaseSource>,
    pub dry_run: bool,
    /// Obtain and renew certificates (needs systemd: nginx reloads through it).
    pub acme: bool,
    pub keep_releases: usize,
    pub lock_wait: Duration,
    /// Who asked, when not an operator (`drift`, `renewal`, …).
    pub trigger: Option<String>,
    /// Hosts whose CA pause the operator lifted: ordered again now.
    pub unpaused: Vec<String>,
    /// Accept a release older than the highest this host has installed.
    pub allow_downgrade: bool,
}

/// What a run did.
#[derive(Debug)]
pub struct RunReport {
    pub summary: Summary,
    /// What was done, in order (display lines).
    pub done: Vec<String>,
    pub health: Vec<Verdict>,
    /// Per host, when the certificate step ran.
    pub certificates: Option<BTreeMap<String, HostOutcome>>,
    pub plan: plan::Plan,
    /// Why the run failed; what was done before stays applied.
    pub error: Option<anyhow::Error>,
}

impl RunReport {
    pub fn result(&self) -> RunResult {
        self.summary.result
    }

    pub fn exit_code(&self) -> i32 {
        self.error.as_ref().map_or(exit::OK, crate::decide::error::exit_code_of)
    }

    /// The class this run counts under when it failed.
    pub(crate) fn failure_class(&self) -> Option<decide::FailureClass> {
        decide::failure_class(decide::Verdict {
            exit_code: self.exit_code(),
            result: Some(self.result()),
            unhealthy: self.health.iter().any(|v| !v.ok),
            certificate_failed: self.certificates.as_ref().is_some_and(|c| c.values().any(|o| o.state.is_failure())),
        })
    }

    /// The run's error with what an operator does next.
    pub(crate) fn into_error(self) -> Option<anyhow::Error> {
        self.error
            .map(|e| e.context("reconcile failed; what was done before the failure stays applied, re-run to finish"))
    }
}

/// Converge the host. `Err` is a run refused before it changed anything (bad input, lock busy,
/// unreadable state, an escrow that disagrees); a run that started returns `Ok` with its error in
/// the report.
pub fn reconcile<M: Manager>(host: &Host<'_, M>, ask: &RunRequest) -> anyhow::Result<RunReport> {
    let began = Instant::now();
    let req = Request { options: plan::Options { no_systemd: host.systemd.is_none() }, ..ask.request.clone() };
    // Decide once before the lock, so bad input is refused with nothing written (not even the lock).
    prepare::prepare(host.root, host.accounts, &req, None)?;
    let bundle = verify_release(host, ask, &req)?;
    let _lock = take_lock(host.root, ask)?;
    let sd = host.systemd.map(|connect| connect()).transpose()?;
    let mut notes = Vec::new();
    let switched = if ask.dry_run { None } else { release_step(host.root, bundle.as_ref(), &mut notes)? };
    let saved = read_state(host.root)?;
    let ctx = steps::Ctx { host, manager: sd.as_ref(), req: &req, saved: &saved };
    let prepared = ctx.prepare()?;
    if ask.dry_run {
        return Ok(RunReport::planned(prepared));
    }
    let (prepared, escrowed) = ctx.escrow(prepared, ask.trigger.is_none())?;
    notes.extend(escrowed.notes);
    let mut marked = mark_pending(host, &saved, &prepared)?;
    if let Some(record) = escrowed.record {
        marked.escrow = Some(record);
    }
    // The later steps observe with the marker: a rollback restarts what this run restarted.
    let ctx = steps::Ctx { saved: &marked, ..ctx };
    let mut converged = Converged::from(ctx.converge(&prepared));
    roll_back_if_failed(&ctx, switched.as_ref(), &mut converged, &mut notes);
    let binaries = binary_hashes(&prepared);
    let (certificates, nginx_marked, owes_reload) = if converged.error.is_none() && ask.acme && sd.is_some() {
        certificate_step(&ctx, &prepared, &binaries, ask, &mut converged)
    } else {
        (None, false, false)
    };
    if owes_reload {
        owe_nginx_reload(&mut marked, host.clock.now_unix());
    }
    let f = Finish { began, saved, marked, prepared, switched, notes, converged, certificates, nginx_marked, binaries };
    finish(host, ask, f)
}

impl RunReport {
    /// A dry run's report: the plan, nothing applied.
    fn planned(prepared: prepare::Prepared) -> Self {
        let summary = report::summary(&prepared, false, None);
        RunReport {
            summary,
            done: Vec::new(),
            health: Vec::new(),
            certificates: None,
            plan: prepared.plan,
            error: None,
        }
    }
}
