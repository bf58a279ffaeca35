//! The named phases of a run, in the order `reconcile` calls them: verify the release, take the
//! lock, read the state, switch the release, mark what is pending, roll back a failed release,
//! the certificate step — each small, each with what it needs passed in.

use std::collections::BTreeMap;

use super::{Host, ReleaseSource, RunRequest, prepare, steps};
use crate::decide::plan;
use crate::decide::release::Trust;
use crate::decide::run::{self as decide, Switch};
use crate::decide::state::Pending;
use crate::host::failpoints;
use crate::host::fs::Root;
use crate::host::health::Verdict;
use crate::host::releases;
use crate::host::state;
use crate::host::systemd::Manager;
use crate::host::tls::HostOutcome;
use prepare::Request;

/// What the converge step (and a rollback after it) left.
pub(super) struct Converged {
    pub(super) done: Vec<String>,
    pub(super) verdicts: Vec<Verdict>,
    pub(super) error: Option<anyhow::Error>,
    pub(super) rolled_back: bool,
}

impl From<Result<(Vec<String>, Vec<Verdict>), steps::Failed>> for Converged {
    fn from(r: Result<(Vec<String>, Vec<Verdict>), steps::Failed>) -> Self {
        match r {
            Ok((done, verdicts)) => Converged { done, verdicts, error: None, rolled_back: false },
            Err(steps::Failed { done, verdicts, error }) => {
                Converged { done, verdicts, error: Some(error), rolled_back: false }
            }
        }
    }
}

/// A certificate went in but nginx may not have been told: the next run reloads it.
pub(super) fn owe_nginx_reload(marked: &mut state::State, now: i64) {
    let p = marked.pending.get_or_insert_with(|| Pending {
        started_unix: u64::try_from(now).unwrap_or_default(),
        pid: std::process::id(),
        restarts: Vec::new(),
    });
    p.restarts = decide::pending_restarts(&p.restarts, &[plan::NGINX.to_owned()]);
}

/// Load and verify a requested release before anything changes (hashes, signature, expiry,
/// downgrade).
pub(super) fn verify_release<M: Manager>(
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
pub(super) fn take_lock(root: &Root, ask: &RunRequest) -> anyhow::Result<Option<state::RunLock>> {
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
pub(super) fn read_state(root: &Root) -> anyhow::Result<state::State> {
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
pub(super) fn mark_pending<M: Manager>(
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
pub(super) fn roll_back_if_failed<M: Manager>(
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
pub(super) fn binary_hashes(prepared: &prepare::Prepared) -> BTreeMap<String, String> {
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
pub(super) fn certificate_step<M: Manager>(
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

/// Switch to the requested release, or adopt the old script's binaries when none exists yet.
pub(super) fn release_step(
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
