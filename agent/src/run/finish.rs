//! The last step of a run: summarise, clean old releases, record the state and the report, tell
//! the journal.

use std::collections::BTreeMap;
use std::time::Instant;

use super::phases::Converged;
use super::{Host, RunReport, RunRequest, prepare, report};
use crate::decide::run::{self as decide, RunResult, Switch};
use crate::host::releases;
use crate::host::state::{self, LastRun};
use crate::host::systemd::Manager;
use crate::host::tls::HostOutcome;

/// Everything the last step needs.
pub(super) struct Finish {
    pub(super) began: Instant,
    pub(super) saved: state::State,
    pub(super) marked: state::State,
    pub(super) prepared: prepare::Prepared,
    pub(super) switched: Option<Switch>,
    pub(super) notes: Vec<String>,
    pub(super) converged: Converged,
    pub(super) certificates: Option<BTreeMap<String, HostOutcome>>,
    pub(super) nginx_marked: bool,
    pub(super) binaries: BTreeMap<String, String>,
}

/// Summarise, clean old releases, record the state and the report, tell the journal.
pub(super) fn finish<M: Manager>(host: &Host<'_, M>, ask: &RunRequest, f: Finish) -> anyhow::Result<RunReport> {
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
