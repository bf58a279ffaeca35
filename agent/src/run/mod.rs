//! One converge, as a library: the command line and the daemon both call [`reconcile`] with the
//! host it acts on and what was asked, and get a typed [`RunReport`] back.
//! Phases: decide (nothing written on bad input) → release → lock → observe/plan → pending marker →
//! files → systemd jobs → health gate → rollback → certificates (re-planned) → retention → record.
//! The run's own decisions are the pure functions of [`decide`].

mod escrow_step;
pub(crate) mod escrow_view;
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
use crate::decide::release::Trust;
use crate::decide::run::{self as decide, RunResult, Switch};
use crate::host::accounts::AccountDb;
use crate::host::clock::Clock;
use crate::host::health::{self, Verdict};
use crate::host::state::{self, LastRun, Pending};
use crate::host::systemd::Manager;
use crate::host::tls::HostOutcome;
use crate::host::{fs::Root, releases};
use crate::{decide::plan, host::failpoints};
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
    let mut converged = match ctx.converge(&prepared) {
        Ok((done, verdicts)) => Converged { done, verdicts, error: None, rolled_back: false },
        Err(steps::Failed { done, verdicts, error }) => {
            Converged { done, verdicts, error: Some(error), rolled_back: false }
        }
    };
    roll_back_if_failed(&ctx, switched.as_ref(), &mut converged, &mut notes);
    let binaries = binary_hashes(&prepared);
    let (certificates, nginx_marked, owes_reload) = if converged.error.is_none() && ask.acme && sd.is_some() {
        certificate_step(&ctx, &prepared, &binaries, ask, &mut converged)
    } else {
        (None, false, false)
    };
    if owes_reload {
        // A certificate went in but nginx may not have been told: the next run reloads it.
        let p = marked.pending.get_or_insert_with(|| Pending {
            started_unix: u64::try_from(host.clock.now_unix()).unwrap_or_default(),
            pid: std::process::id(),
            restarts: Vec::new(),
        });
        p.restarts = decide::pending_restarts(&p.restarts, &[plan::NGINX.to_owned()]);
    }
    let f = Finish { began, saved, marked, prepared, switched, notes, converged, certificates, nginx_marked, binaries };
    finish(host, ask, f)
}

/// What the converge step (and a rollback after it) left.
struct Converged {
    done: Vec<String>,
    verdicts: Vec<Verdict>,
    error: Option<anyhow::Error>,
    rolled_back: bool,
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

/// Load and verify a requested release before anything changes (hashes, signature, expiry,
/// downgrade).
fn verify_release<M: Manager>(
    host: &Host<'_, M>,
    ask: &RunRequest,
    req: &Request,
) -> anyhow::Result<Option<releases::Loaded>> {
    let Some(source) = &ask.release else { return Ok(None) };
    let config = prepare::read_inputs(host.root, req)?.config;
    let trust = Trust {
        keys: config.release_keys.map(|k| k.value).unwrap_or_default(),
        highest: state::read(host.root)?.highest_release,
        allow_downgrade: ask.allow_downgrade,
    };
    let now = host.clock.now_unix();
    Ok(Some(match source {
        ReleaseSource::Url { url, sha256, ca } => {
            if sha256.is_none() && trust.keys.is_empty() {
                return Err(crate::decide::error::InvalidInput::new(
                    crate::decide::error::Source::Flag("--sha256".into()),
                    "a release URL needs --sha256, or release keys pinned in [release] keys: nothing downloaded is trusted unpinned",
                )
                .into());
            }
            host.rt.block_on(crate::host::download::release(url, sha256.as_deref(), ca.as_deref(), &trust, now))?
        }
        ReleaseSource::Local { path, sha256 } => releases::load(path, sha256.as_deref(), &trust, now)?,
    }))
}

/// The run lock (none for a dry run), saying so while queued.
fn take_lock(root: &Root, ask: &RunRequest) -> anyhow::Result<Option<state::RunLock>> {
    if ask.dry_run {
        return Ok(None);
    }
    Ok(Some(state::lock(root, ask.lock_wait, |holder| {
        eprintln!(
            "queued: another converge (pid {holder}) holds the lock; waiting up to {} s",
            ask.lock_wait.as_secs()
        );
    })?))
}

/// hostd's state, saying when an earlier run did not finish.
fn read_state(root: &Root) -> anyhow::Result<state::State> {
    let saved = state::read(root)?;
    if let Some(p) = &saved.pending {
        eprintln!(
            "note: a run started by pid {} did not finish; completing its restarts ({})",
            p.pid,
            p.restarts.join(", ")
        );
    }
    Ok(saved)
}

/// Write the pending marker (this run's restarts and those an earlier run left) before acting.
fn mark_pending<M: Manager>(
    host: &Host<'_, M>,
    saved: &state::State,
    prepared: &prepare::Prepared,
) -> anyhow::Result<state::State> {
    let this_run = plan::marked(&prepared.plan);
    let earlier = saved.pending.as_ref().map(|p| p.restarts.clone()).unwrap_or_default();
    let pending = decide::pending_restarts(&this_run, &earlier);
    let mut marked = saved.clone();
    if !pending.is_empty() {
        let started_unix = u64::try_from(host.clock.now_unix()).unwrap_or_default();
        marked.pending = Some(Pending { started_unix, pid: std::process::id(), restarts: pending });
        state::write(host.root, &marked)?;
    }
    Ok(marked)
}

/// Health-gated rollback: back to the previous release, restart what changed again, verify.
fn roll_back_if_failed<M: Manager>(
    ctx: &steps::Ctx<'_, '_, M>,
    switched: Option<&Switch>,
    c: &mut Converged,
    notes: &mut Vec<String>,
) {
    let (Some(why), Some(previous)) =
        (&c.error, decide::rollback_target(c.error.is_some(), switched, ctx.manager.is_some()))
    else {
        return;
    };
    let id = switched.map(|s| s.to.clone()).unwrap_or_default();
    let why = format!("{why:#}");
    let back = ctx.rollback(previous);
    c.rolled_back = back.is_ok();
    c.error = Some(match back {
        Ok(more) => {
            c.done.extend(more);
            anyhow::anyhow!("rolled_back: release {id} failed and {previous} is serving again, healthy\n{why}")
        }
        Err(b) => anyhow::anyhow!("release {id} failed ({why}) and the rollback to {previous} failed too: {b:#}"),
    });
    notes.push(format!("rolled back from {id} to {previous}"));
}

/// unit → SHA-256 of the binary this run converged.
fn binary_hashes(prepared: &prepare::Prepared) -> BTreeMap<String, String> {
    prepared
        .observed
        .runtime
        .as_ref()
        .map(|r| r.services.iter().filter_map(|(u, f)| f.binary_sha256.clone().map(|h| (u.clone(), h))).collect())
        .unwrap_or_default()
}

/// Certificates: order, install, flip to HTTPS, prove served. A failure is the run's error;
/// an install nginx was not told about is owed by the next run (the pending marker names nginx).
/// Also returns whether the step marked nginx in the state file (the run must then record), and
/// whether it failed after that (the next run owes nginx a reload).
fn certificate_step<M: Manager>(
    ctx: &steps::Ctx<'_, '_, M>,
    prepared: &prepare::Prepared,
    binaries: &BTreeMap<String, String>,
    ask: &RunRequest,
    c: &mut Converged,
) -> (Option<BTreeMap<String, HostOutcome>>, bool, bool) {
    let converged = decide::converged_state(ctx.saved, binaries.clone());
    let ctx = steps::Ctx { saved: &converged, ..*ctx };
    // Set when the certificate step wrote an owed nginx reload into the state file.
    let nginx_marked = std::cell::Cell::new(false);
    let step = ctx.certificates(prepared, &nginx_marked, &ask.unpaused);
    match step {
        Ok((outcomes, more)) => {
            c.done.extend(more);
            let failed: Vec<String> = outcomes
                .iter()
                .filter(|(_, o)| o.state.is_failure())
                .map(|(h, o)| format!("{h}: {}", o.detail))
                .collect();
            if !failed.is_empty() {
                c.error = Some(anyhow::anyhow!(
                    "certificates could not be obtained for {} host(s); each keeps what it served before:\n{}",
                    failed.len(),
                    failed.join("\n")
                ));
            }
            (Some(outcomes), nginx_marked.get(), false)
        }
        Err(e) => {
            c.error = Some(e);
            (None, nginx_marked.get(), nginx_marked.get())
        }
    }
}

/// Everything the last step needs.
struct Finish {
    began: Instant,
    saved: state::State,
    marked: state::State,
    prepared: prepare::Prepared,
    switched: Option<Switch>,
    notes: Vec<String>,
    converged: Converged,
    certificates: Option<BTreeMap<String, HostOutcome>>,
    nginx_marked: bool,
    binaries: BTreeMap<String, String>,
}

/// Summarise, clean old releases, record the state and the report, tell the journal.
fn finish<M: Manager>(host: &Host<'_, M>, ask: &RunRequest, f: Finish) -> anyhow::Result<RunReport> {
    let root = host.root;
    let Finish { began, saved, marked, prepared, switched, notes, converged, certificates, nginx_marked, binaries } = f;
    let Converged { done, verdicts, error, rolled_back } = converged;
    let mut summary = report::summary(&prepared, true, error.as_ref().map(|e| format!("{e:#}")));
    summary.notes.extend(notes);
    summary.release = releases::current(root);
    summary.result = RunResult::of(error.is_some(), true, prepared.plan.is_empty(), rolled_back);
    summary.escrow = Some(crate::decide::escrow::summary_state(prepared.settings.escrow, marked.escrow.as_ref()));
    if error.is_none() {
        let previous = switched.as_ref().and_then(|s| s.from.as_deref());
        let keep = crate::decide::release::releases_to_keep(
            releases::current(root).as_deref(),
            previous,
            &releases::list_by_age(root)?,
            ask.keep_releases,
        );
        let keep: Vec<&str> = keep.iter().map(String::as_str).collect();
        for r in releases::clean(root, &keep)? {
            summary.notes.push(format!("removed old release {r}"));
        }
    }
    if let Some(outcomes) = &certificates {
        report::add_certificates(&mut summary, outcomes, host.clock.now_unix());
    }
    if !verdicts.is_empty() {
        summary.healthy = Some(verdicts.iter().filter(|v| v.ok).count());
        summary.unhealthy = verdicts.iter().filter(|v| !v.ok).map(|v| (v.unit.clone(), v.detail.clone())).collect();
    }
    summary.trigger.clone_from(&ask.trigger);
    if ask.trigger.as_deref() == Some("drift") {
        // A drift check only finds what someone changed by hand: each file it puts back is corrective.
        summary.corrective =
            prepared.plan.actions.iter().filter(|a| !a.is_service_effect()).map(ToString::to_string).collect();
    }
    let last = LastRun {
        result: summary.result.to_string(),
        finished_unix: u64::try_from(host.clock.now_unix()).unwrap_or_default(),
        duration_ms: u64::try_from(began.elapsed().as_millis()).unwrap_or(u64::MAX),
        summary: serde_json::to_value(&summary)?,
    };
    let after = decide::next_state(marked, error.is_some(), rolled_back, binaries, last);
    // A run that marked an owed reload must write its outcome, or the marker would outlive it.
    if nginx_marked || !decide::writes_nothing(prepared.plan.is_empty(), error.is_some(), &saved, &after) {
        state::write(root, &after)?;
        let full = serde_json::json!({
            "summary": &summary,
            "done": &done,
            "health": verdicts,
            "plan": prepared.plan.actions.iter().map(ToString::to_string).collect::<Vec<_>>(),
        });
        root.write_atomic(state::REPORT_FILE, (serde_json::to_string_pretty(&full)? + "\n").as_bytes(), 0o600, 0, 0)?;
    }
    if root.is_real_root() {
        let line = serde_json::to_string(&summary)?;
        let message =
            format!("reconcile {}: {} changed, {} restarted", summary.result, summary.changed, summary.restarts.len());
        crate::host::journal::send(&message, &[("AGENTKEYS_SUMMARY", &line)]);
    }
    Ok(RunReport { summary, done, health: verdicts, certificates, plan: prepared.plan, error })
}

/// Switch to the requested release, or adopt the old script's binaries when none exists yet.
fn release_step(
    root: &Root,
    bundle: Option<&releases::Loaded>,
    notes: &mut Vec<String>,
) -> anyhow::Result<Option<Switch>> {
    if let Some(b) = bundle {
        let id = releases::install(root, b)?;
        // The highest version this host has had: an older bundle later is a rollback or a replay.
        let mut saved = state::read(root)?;
        if let Some(highest) =
            crate::decide::release::new_highest(&b.manifest.version, saved.highest_release.as_deref())
        {
            saved.highest_release = Some(highest);
            state::write(root, &saved)?;
        }
        failpoints::hit("release-staged");
        if releases::current(root).as_deref() != Some(id.as_str()) {
            let previous = releases::switch(root, &id)?;
            failpoints::hit("release-switched");
            notes.push(format!("switched to release {id} (previous: {})", previous.as_deref().unwrap_or("none")));
            return Ok(Some(Switch { to: id, from: previous }));
        }
    } else if releases::current(root).is_none()
        && let Some(id) = releases::adopt(root)?
    {
        notes.push(format!("adopted the binaries in /usr/local/bin as release {id}"));
    }
    Ok(None)
}
