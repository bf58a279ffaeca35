//! `agentkeys-hostd reconcile`: converge the host, or print the plan with `--dry-run`.
//! Order: lock → observe → plan → pending marker → files → systemd jobs → health gate → state.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use super::{ReconcileArgs, emit};
use crate::acme_policy::CertState;
use crate::engine::{self, Prepared, Request};
use crate::error::{InvalidInput, Source, exit};
use crate::host::health;
use crate::host::systemd::Systemd;
use crate::host::{accounts, fs::Root, releases};
use crate::plan::Options;
use crate::settings::Flags;
use crate::state::{self, LastRun, Pending};
use crate::{apply, execute, failpoints, report};

/// How long the health gate retries before it declares a service down.
const HEALTH_BUDGET: Duration = Duration::from_secs(30);

fn refuse(flag: &str, why: &str) -> anyhow::Error {
    InvalidInput::new(Source::Flag(flag.into()), why.to_owned()).into()
}

pub fn run(args: &ReconcileArgs) -> anyhow::Result<i32> {
    run_collect(args, &mut None)
}

/// `run`, also handing back the run's JSON summary (when it got that far) to the daemon.
pub fn run_collect(args: &ReconcileArgs, collected: &mut Option<serde_json::Value>) -> anyhow::Result<i32> {
    let c = &args.common;
    let root = Root::new(&c.root);
    if !args.dry_run && !args.no_acme && args.no_systemd {
        return Err(refuse(
            "--no-acme",
            "certificates are served after an nginx reload through systemd; with --no-systemd add --no-acme",
        ));
    }
    if !args.dry_run && !args.no_systemd && !root.is_real_root() {
        return Err(refuse(
            "--root",
            "driving systemd only makes sense on /; add --no-systemd to converge files under another root",
        ));
    }
    // Under another root systemd is never queried (a dry run there plans the files only).
    let no_systemd = args.no_systemd || !root.is_real_root();
    let began = Instant::now();
    let db = accounts::for_root(&root);
    let req = Request {
        selectors: c.selectors(),
        flags: Flags { account_id: c.account_id.clone(), region: args.region.clone() },
        env_file: c.env_file.clone(),
        options: Options { no_systemd },
    };
    // Decide once before taking the lock, so bad input is refused with nothing written (not even
    // the lock file); the run itself decides again under the lock. A release is verified here too.
    engine::prepare(&root, db.as_ref(), &req, None)?;
    let bundle = match &args.release {
        Some(src) if src.starts_with("https://") => {
            let Some(sha) = &args.sha256 else {
                return Err(refuse("--sha256", "a release URL needs --sha256: nothing downloaded is trusted unpinned"));
            };
            Some(crate::host::download::release(src, sha, args.release_ca.as_deref())?)
        }
        Some(src) => Some(releases::load(src, args.sha256.as_deref())?),
        None => None,
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let _lock = if args.dry_run {
        None
    } else {
        Some(state::lock(&root, Duration::from_secs(args.lock_wait_secs), |holder| {
            eprintln!(
                "queued: another converge (pid {holder}) holds the lock; waiting up to {} s",
                args.lock_wait_secs
            );
        })?)
    };
    let sd = if no_systemd { None } else { Some(rt.block_on(Systemd::connect())?) };
    // Releases: switch to the requested one, or adopt the old script's binaries when none exists.
    let mut release_notes = Vec::new();
    let mut switched: Option<(String, Option<String>)> = None;
    if !args.dry_run {
        if let Some(b) = &bundle {
            let id = releases::install(&root, b)?;
            failpoints::hit("release-staged");
            if releases::current(&root).as_deref() != Some(id.as_str()) {
                let previous = releases::switch(&root, &id)?;
                failpoints::hit("release-switched");
                release_notes
                    .push(format!("switched to release {id} (previous: {})", previous.as_deref().unwrap_or("none")));
                switched = Some((id, previous));
            }
        } else if releases::current(&root).is_none()
            && let Some(id) = releases::adopt(&root)?
        {
            release_notes.push(format!("adopted the binaries in /usr/local/bin as release {id}"));
        }
    }
    let mut saved = state::read(&root)?;
    let before = saved.clone();
    if let Some(p) = &saved.pending {
        eprintln!(
            "note: a run started by pid {} did not finish; completing its restarts ({})",
            p.pid,
            p.restarts.join(", ")
        );
    }
    let probe = |settings: &crate::settings::Settings| {
        rt.block_on(engine::observe_runtime(sd.as_ref().expect("systemd"), &root, settings, &saved))
    };
    let prepared = engine::prepare(&root, db.as_ref(), &req, sd.as_ref().map(|_| &probe as engine::RuntimeProbe<'_>))?;
    if args.dry_run {
        if c.json {
            emit(&(serde_json::to_string(&report::summary(&prepared, false, None))? + "\n"))?;
        }
        emit(&prepared.plan.to_string())?;
        return Ok(exit::OK);
    }

    // The pending marker: what this run will restart, merged with what an earlier run left undone.
    let mut pending: Vec<String> = prepared
        .plan
        .actions
        .iter()
        .filter_map(|a| a.started_unit())
        .map(|u| u.trim_end_matches(".service").to_owned())
        .collect();
    for u in saved.pending.as_ref().map(|p| p.restarts.clone()).unwrap_or_default() {
        if !pending.contains(&u) {
            pending.push(u);
        }
    }
    if !pending.is_empty() {
        saved.pending = Some(Pending { started_unix: state::now_unix(), pid: std::process::id(), restarts: pending });
        state::write(&root, &saved)?;
    }

    let result = converge(&rt, sd.as_ref(), &root, db.as_ref(), &prepared);
    let (mut done, verdicts, mut error) = match result {
        Ok((done, verdicts)) => (done, verdicts, None),
        Err((done, verdicts, e)) => (done, verdicts, Some(e)),
    };
    let mut rolled_back = false;
    if let (Some(e), Some((id, Some(previous))), Some(sd)) = (&error, &switched, sd.as_ref()) {
        // Health-gated rollback: back to the previous release, restart what changed again, verify.
        let why = format!("{e:#}");
        let ctx = Ctx { rt: &rt, sd, root: &root, db: db.as_ref(), req: &req, saved: &saved };
        let back = rollback(&ctx, previous);
        done.extend(back.as_ref().map(Clone::clone).unwrap_or_default());
        rolled_back = back.is_ok();
        error = Some(match back {
            Ok(_) => {
                anyhow::anyhow!("rolled_back: release {id} failed and {previous} is serving again, healthy\n{why}")
            }
            Err(b) => anyhow::anyhow!("release {id} failed ({why}) and the rollback to {previous} failed too: {b:#}"),
        });
        release_notes.push(format!("rolled back from {id} to {previous}"));
    }
    let mut certs = None;
    if let (None, false, Some(sd)) = (&error, args.no_acme, sd.as_ref()) {
        let ctx = Ctx { rt: &rt, sd, root: &root, db: db.as_ref(), req: &req, saved: &saved };
        match certificates(&ctx, &prepared) {
            Ok((outcomes, more)) => {
                done.extend(more);
                let failed: Vec<String> = outcomes
                    .iter()
                    .filter(|(_, o)| o.state.is_failure())
                    .map(|(h, o)| format!("{h}: {}", o.detail))
                    .collect();
                if !failed.is_empty() {
                    error = Some(anyhow::anyhow!(
                        "certificates could not be obtained for {} host(s); each keeps what it served before:\n{}",
                        failed.len(),
                        failed.join("\n")
                    ));
                }
                certs = Some(outcomes);
            }
            Err(e) => error = Some(e),
        }
    }
    let mut summary = report::summary(&prepared, true, error.as_ref().map(|e| format!("{e:#}")));
    summary.notes.extend(release_notes);
    summary.release = releases::current(&root);
    if rolled_back {
        summary.result = "rolled_back";
    }
    if error.is_none() && !args.dry_run {
        let previous = switched.as_ref().and_then(|(_, p)| p.as_deref());
        let keep = crate::release::releases_to_keep(
            releases::current(&root).as_deref(),
            previous,
            &releases::list_by_age(&root)?,
            args.keep_releases,
        );
        let keep: Vec<&str> = keep.iter().map(String::as_str).collect();
        for r in releases::clean(&root, &keep)? {
            summary.notes.push(format!("removed old release {r}"));
        }
    }
    if let Some(outcomes) = &certs {
        let now = state::now_unix() as i64;
        summary.parked = outcomes.values().filter(|o| o.state == CertState::DnsNotReady).count();
        summary.tls = outcomes
            .iter()
            .map(|(h, o)| {
                (h.clone(), o.days_left(now).map_or_else(|| o.state.to_string(), |d| format!("{} {d}d", o.state)))
            })
            .collect();
    }
    if !verdicts.is_empty() {
        summary.healthy = Some(verdicts.iter().filter(|v| v.ok).count());
        summary.unhealthy = verdicts.iter().filter(|v| !v.ok).map(|v| (v.unit.clone(), v.detail.clone())).collect();
    }
    summary.trigger.clone_from(&args.trigger);
    if args.trigger.as_deref() == Some("drift") {
        // A drift check only finds what someone changed by hand: each file it puts back is corrective.
        summary.corrective =
            prepared.plan.actions.iter().filter(|a| !a.is_service_effect()).map(ToString::to_string).collect();
    }
    *collected = Some(serde_json::to_value(&summary)?);
    if rolled_back {
        // The previous release is serving and verified: nothing is left for a later run to finish.
        saved.pending = None;
    }
    if error.is_none() {
        saved.pending = None;
        saved.binaries = prepared
            .observed
            .runtime
            .as_ref()
            .map(|r| r.services.iter().filter_map(|(u, f)| f.binary_sha256.clone().map(|h| (u.clone(), h))).collect())
            .unwrap_or_default();
    }
    saved.last_run = Some(LastRun {
        result: summary.result.to_owned(),
        finished_unix: state::now_unix(),
        duration_ms: u64::try_from(began.elapsed().as_millis()).unwrap_or(u64::MAX),
        summary: serde_json::to_value(&summary)?,
    });
    // A no-op run on a healthy, converged host writes nothing at all, not even its state file:
    // `status` then shows the last run that changed something.
    let noop = prepared.plan.is_empty()
        && error.is_none()
        && before.pending.is_none()
        && before.binaries == saved.binaries
        && before.last_run.as_ref().is_some_and(|r| r.result != "failed");
    if !noop {
        state::write(&root, &saved)?;
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
    if c.json {
        emit(&(serde_json::to_string(&summary)? + "\n"))?;
    }
    let mut text = String::new();
    for line in &done {
        writeln!(text, "done: {line}")?;
    }
    for note in &summary.notes {
        writeln!(text, "note: {note}")?;
    }
    match error {
        None => {
            writeln!(
                text,
                "{}: {} changed, {} unchanged, {} (re)started",
                summary.result,
                summary.changed,
                summary.unchanged,
                summary.restarts.len()
            )?;
            emit(&text)?;
            Ok(exit::OK)
        }
        Some(e) => {
            emit(&text)?;
            Err(e.context("reconcile failed; what was done before the failure stays applied, re-run to finish"))
        }
    }
}

/// What the follow-up steps of a run (certificates, rollback) work with.
#[derive(Clone, Copy)]
struct Ctx<'a> {
    rt: &'a tokio::runtime::Runtime,
    sd: &'a Systemd,
    root: &'a Root,
    db: &'a dyn accounts::AccountDb,
    req: &'a Request,
    saved: &'a state::State,
}

/// The certificate step, then — if any certificate was installed — the vhosts flip to HTTPS
/// through the same plan/apply path (files, `nginx -t`, reload).
fn certificates(
    ctx: &Ctx<'_>,
    p: &Prepared,
) -> anyhow::Result<(std::collections::BTreeMap<String, crate::tls::HostOutcome>, Vec<String>)> {
    let (rt, root) = (ctx.rt, ctx.root);
    let now = state::now_unix() as i64;
    let (outcomes, installed) = rt.block_on(crate::tls::converge(root, &p.settings, &p.facts.tls, now))?;
    let mut done = Vec::new();
    if installed {
        let (more, plan) = reconverge(ctx)?;
        done = more;
        let renewed: Vec<String> =
            outcomes.iter().filter(|(_, o)| o.state == CertState::Issued).map(|(h, _)| h.clone()).collect();
        if let Some(reload) = crate::plan::reload_for_certificates(&plan, &renewed) {
            // The vhosts point at each host's `current` link: a renewal changes no nginx file, so
            // nginx must still be told, or it keeps serving the old certificate (spec §12).
            let accounts = ctx.db.lookup(&crate::observe::ACCOUNTS.0, &crate::observe::ACCOUNTS.1)?;
            let only = crate::plan::Plan { actions: vec![reload.clone()] };
            let settings = &p.settings;
            done.extend(rt.block_on(execute::run(ctx.sd, root, settings, &accounts, &only))?);
        }
        for (host, o) in outcomes.iter().filter(|(_, o)| o.state == CertState::Issued) {
            let path = root.path(&format!("{}/{host}/current/fullchain.pem", crate::paths::TLS_STORE));
            let leaf = crate::host::certs::read_leaf(&path)?.leaf_der;
            crate::host::tls_proof::prove(443, host, &leaf, Duration::from_secs(10))?;
            done.push(format!(
                "prove {host} serves serial {} on 127.0.0.1:443",
                o.serial.as_deref().unwrap_or_default()
            ));
        }
    }
    Ok((outcomes, done))
}

/// Switch back to `previous` and converge again (only the services whose binary changed restart).
fn rollback(ctx: &Ctx<'_>, previous: &str) -> anyhow::Result<Vec<String>> {
    releases::switch(ctx.root, previous)?;
    let (mut done, _) = reconverge(ctx)?;
    done.insert(0, format!("rollback: switched back to release {previous}"));
    Ok(done)
}

/// Observe and plan again after the host changed under the plan (a certificate installed, a
/// release switched back), then apply, run the service jobs and health-gate the result.
fn reconverge(ctx: &Ctx<'_>) -> anyhow::Result<(Vec<String>, crate::plan::Plan)> {
    let Ctx { rt, sd, root, db, req, saved } = *ctx;
    let probe = |settings: &crate::settings::Settings| rt.block_on(engine::observe_runtime(sd, root, settings, saved));
    let again = engine::prepare(root, db, req, Some(&probe))?;
    converge(rt, Some(sd), root, db, &again).map(|(done, _)| (done, again.plan)).map_err(|(_, _, e)| e)
}

type Failed = (Vec<String>, Vec<health::Verdict>, anyhow::Error);

/// Files, then systemd jobs, then the health gate.
fn converge(
    rt: &tokio::runtime::Runtime,
    sd: Option<&Systemd>,
    root: &Root,
    db: &dyn accounts::AccountDb,
    p: &Prepared,
) -> Result<(Vec<String>, Vec<health::Verdict>), Failed> {
    let mut done = apply::apply(root, db, &p.plan, &p.observed).map_err(|e| (Vec::new(), Vec::new(), e))?.done;
    failpoints::hit("after-files");
    let Some(sd) = sd else {
        return Ok((done, Vec::new()));
    };
    let accounts = db
        .lookup(&crate::observe::ACCOUNTS.0, &crate::observe::ACCOUNTS.1)
        .map_err(|e| (done.clone(), Vec::new(), e))?;
    match rt.block_on(execute::run(sd, root, &p.settings, &accounts, &p.plan)) {
        Ok(mut more) => done.append(&mut more),
        Err(e) => return Err((done, Vec::new(), e)),
    }
    failpoints::hit("before-health");
    let services: Vec<&crate::catalog::Service> = p.settings.services().collect();
    let verdicts = health::gate(HEALTH_BUDGET, &services);
    failpoints::hit("after-health");
    if let Some(bad) = verdicts.iter().find(|v| !v.ok) {
        let state = rt.block_on(sd.unit_state(&bad.unit)).ok();
        let e = execute::unit_failure(&bad.unit, &format!("failed its health check: {}", bad.detail), state.as_ref());
        return Err((done, verdicts, e));
    }
    Ok((done, verdicts))
}
