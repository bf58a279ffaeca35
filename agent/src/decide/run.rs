//! The run's own decisions, pure: its result, the pending-restart marker, whether to roll back,
//! whether a run writes anything, and the class a failed run is counted under.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::decide::error::exit;
use crate::decide::state::{LastRun, State};

/// How a run ended (the `result` of the JSON summary).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunResult {
    /// A dry run: nothing applied.
    Planned,
    /// Nothing to do.
    Converged,
    /// Something changed, and everything came up.
    Changed,
    Failed,
    /// The new release failed and the previous one is serving again, healthy.
    RolledBack,
}

impl RunResult {
    pub fn as_str(self) -> &'static str {
        match self {
            RunResult::Planned => "planned",
            RunResult::Converged => "converged",
            RunResult::Changed => "changed",
            RunResult::Failed => "failed",
            RunResult::RolledBack => "rolled_back",
        }
    }

    /// The result of a run from its facts; a rollback that verified wins over the failure it undid.
    pub fn of(failed: bool, applied: bool, plan_empty: bool, rolled_back: bool) -> Self {
        match (rolled_back, failed, applied, plan_empty) {
            (true, _, _, _) => RunResult::RolledBack,
            (false, true, _, _) => RunResult::Failed,
            (false, false, false, _) => RunResult::Planned,
            (false, false, true, true) => RunResult::Converged,
            (false, false, true, false) => RunResult::Changed,
        }
    }
}

impl std::fmt::Display for RunResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The class a failed run is counted under in the daemon's metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum FailureClass {
    InvalidInput,
    IdentityConflict,
    LockBusy,
    RolledBack,
    Health,
    Acme,
    Apply,
}

impl FailureClass {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::InvalidInput => "invalid_input",
            FailureClass::IdentityConflict => "identity_conflict",
            FailureClass::LockBusy => "lock_busy",
            FailureClass::RolledBack => "rolled_back",
            FailureClass::Health => "health",
            FailureClass::Acme => "acme",
            FailureClass::Apply => "apply",
        }
    }
}

/// What a finished (or refused) run says about itself, for [`failure_class`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub exit_code: i32,
    /// `None` when the run was refused before it started (bad input, lock busy).
    pub result: Option<RunResult>,
    pub unhealthy: bool,
    pub certificate_failed: bool,
}

/// The class of a failed run (`None` for success): refusals by their exit code, then what failed.
pub(crate) fn failure_class(v: Verdict) -> Option<FailureClass> {
    match (v.exit_code, v.result) {
        (exit::OK, _) => None,
        (exit::INVALID, _) => Some(FailureClass::InvalidInput),
        (exit::CONFLICT, _) => Some(FailureClass::IdentityConflict),
        (exit::LOCKED, _) => Some(FailureClass::LockBusy),
        (_, Some(RunResult::RolledBack)) => Some(FailureClass::RolledBack),
        _ if v.unhealthy => Some(FailureClass::Health),
        _ if v.certificate_failed => Some(FailureClass::Acme),
        _ => Some(FailureClass::Apply),
    }
}

/// SSM keeps the first 24,000 characters of a command's output, and the one-line JSON summary is
/// first: its error text is cut to this many characters (the whole text is on stderr, in the
/// journal and in the run report).
pub const SUMMARY_ERROR_MAX: usize = 4_000;

/// `error` cut to [`SUMMARY_ERROR_MAX`] characters on a character boundary, saying where the rest is.
pub fn summary_error(error: &str) -> String {
    if error.chars().count() <= SUMMARY_ERROR_MAX {
        return error.to_owned();
    }
    let cut: String = error.chars().take(SUMMARY_ERROR_MAX).collect();
    format!("{cut}… (cut; the whole error is on stderr and in /var/lib/agentkeys-hostd/last-report.json)")
}

/// The restarts the pending marker must hold: this run's, then those an interrupted earlier run
/// left undone (each once, in that order).
pub(crate) fn pending_restarts(this_run: &[String], earlier: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for u in this_run.iter().chain(earlier) {
        if !out.contains(u) {
            out.push(u.clone());
        }
    }
    out
}

/// The release switch a run made: the one it switched to, and the one serving before (if any).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Switch {
    pub to: String,
    pub from: Option<String>,
}

/// The release to roll back to: only when the run failed after switching releases, there was a
/// release before, and systemd is driven (a files-only run restarts nothing to verify).
pub(crate) fn rollback_target(failed: bool, switched: Option<&Switch>, systemd: bool) -> Option<&str> {
    match (failed, switched, systemd) {
        (true, Some(Switch { from: Some(previous), .. }), true) => Some(previous),
        _ => None,
    }
}

/// What a later step of a successful converge observes with (the certificate step's re-plan):
/// this run's restarts are done and its binaries are the ones that passed the gate, so the
/// re-plan restarts only what the new certificates change, never the same services again.
pub(crate) fn converged_state(marked: &State, binaries: BTreeMap<String, String>) -> State {
    State { pending: None, binaries, ..marked.clone() }
}

/// The state a run leaves behind: the pending marker cleared when nothing is left to finish (it
/// succeeded, or the rollback verified), the binaries recorded on success, and the last run.
pub(crate) fn next_state(
    mut saved: State,
    failed: bool,
    rolled_back: bool,
    binaries: BTreeMap<String, String>,
    last: LastRun,
) -> State {
    if rolled_back || !failed {
        saved.pending = None;
    }
    if !failed {
        saved.binaries = binaries;
    }
    saved.last_run = Some(last);
    saved
}

/// A no-op run on a healthy, converged host writes nothing at all, not even its state file:
/// `status` then shows the last run that changed something.
pub(crate) fn writes_nothing(plan_empty: bool, failed: bool, before: &State, after: &State) -> bool {
    plan_empty
        && !failed
        && before.pending.is_none()
        && before.binaries == after.binaries
        && before.escrow == after.escrow
        && before.last_run.as_ref().is_some_and(|r| r.result != RunResult::Failed.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::state::Pending;

    #[test]
    fn results_from_facts() {
        let table = [
            ((false, false, true, false), RunResult::Planned),
            ((false, false, false, false), RunResult::Planned),
            ((false, true, true, false), RunResult::Converged),
            ((false, true, false, false), RunResult::Changed),
            ((true, true, false, false), RunResult::Failed),
            ((true, true, false, true), RunResult::RolledBack),
        ];
        for ((failed, applied, empty, rolled), want) in table {
            assert_eq!(RunResult::of(failed, applied, empty, rolled), want, "{failed} {applied} {empty} {rolled}");
        }
        assert_eq!(serde_json::to_string(&RunResult::RolledBack).expect("json"), "\"rolled_back\"");
    }

    #[test]
    fn failures_are_classed() {
        let v = |exit_code, result, unhealthy, certificate_failed| Verdict {
            exit_code,
            result,
            unhealthy,
            certificate_failed,
        };
        let failed = Some(RunResult::Failed);
        let table = [
            (v(0, Some(RunResult::Changed), false, false), None),
            (v(2, None, false, false), Some(FailureClass::InvalidInput)),
            (v(3, None, false, false), Some(FailureClass::IdentityConflict)),
            (v(75, None, false, false), Some(FailureClass::LockBusy)),
            (v(1, Some(RunResult::RolledBack), true, false), Some(FailureClass::RolledBack)),
            (v(1, failed, true, true), Some(FailureClass::Health)),
            (v(1, failed, false, true), Some(FailureClass::Acme)),
            (v(1, failed, false, false), Some(FailureClass::Apply)),
            (v(1, None, false, false), Some(FailureClass::Apply)),
        ];
        for (verdict, want) in table {
            assert_eq!(failure_class(verdict), want, "{verdict:?}");
        }
        assert_eq!(FailureClass::InvalidInput.as_str(), "invalid_input");
    }

    #[test]
    fn pending_keeps_this_runs_restarts_then_the_earlier_ones() {
        let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
        assert_eq!(pending_restarts(&s(&["a", "b"]), &s(&["b", "c"])), s(&["a", "b", "c"]));
        assert_eq!(pending_restarts(&[], &s(&["c"])), s(&["c"]));
        assert!(pending_restarts(&[], &[]).is_empty());
    }

    #[test]
    fn rollback_only_after_a_switch_with_a_previous_release() {
        let sw = Switch { to: "b".into(), from: Some("a".into()) };
        let first = Switch { to: "a".into(), from: None };
        assert_eq!(rollback_target(true, Some(&sw), true), Some("a"));
        assert_eq!(rollback_target(false, Some(&sw), true), None, "a good run keeps its release");
        assert_eq!(rollback_target(true, Some(&first), true), None, "nothing to go back to");
        assert_eq!(rollback_target(true, None, true), None, "no switch in this run");
        assert_eq!(rollback_target(true, Some(&sw), false), None, "files only: nothing restarted");
    }

    fn last(result: &str) -> LastRun {
        LastRun { result: result.into(), finished_unix: 1, duration_ms: 2, summary: serde_json::Value::Null }
    }

    #[test]
    fn the_state_a_run_leaves() {
        let pending = Pending { started_unix: 1, pid: 2, restarts: vec!["a".into()] };
        let saved = State { pending: Some(pending), ..State::default() };
        let bins: BTreeMap<String, String> = [("a".to_owned(), "h".to_owned())].into();
        let ok = next_state(saved.clone(), false, false, bins.clone(), last("changed"));
        assert!(ok.pending.is_none() && ok.binaries == bins);
        let bad = next_state(saved.clone(), true, false, bins.clone(), last("failed"));
        assert!(bad.pending.is_some() && bad.binaries.is_empty(), "a failed run leaves its marker for the next");
        let back = next_state(saved, true, true, bins, last("rolled_back"));
        assert!(back.pending.is_none() && back.binaries.is_empty(), "verified rollback: nothing left to finish");
    }

    #[test]
    fn after_a_good_converge_nothing_is_pending_and_the_binaries_are_current() {
        let pending = Pending { started_unix: 1, pid: 2, restarts: vec!["a".into()] };
        let marked = State { pending: Some(pending), last_run: Some(last("changed")), ..State::default() };
        let bins: BTreeMap<String, String> = [("a".to_owned(), "new".to_owned())].into();
        let after = converged_state(&marked, bins.clone());
        assert!(after.pending.is_none() && after.binaries == bins);
        assert_eq!(after.last_run, marked.last_run, "the record of the last run is not this step's to change");
    }

    #[test]
    fn only_a_clean_no_op_writes_nothing() {
        let converged = State { last_run: Some(last("converged")), ..State::default() };
        assert!(writes_nothing(true, false, &converged, &converged));
        assert!(!writes_nothing(false, false, &converged, &converged), "a plan to apply");
        assert!(!writes_nothing(true, true, &converged, &converged), "a failure is recorded");
        let after_failure = State { last_run: Some(last("failed")), ..State::default() };
        assert!(!writes_nothing(true, false, &after_failure, &after_failure), "recovery is recorded");
        assert!(!writes_nothing(true, false, &State::default(), &State::default()), "a first run is recorded");
        let bins = State { binaries: [("a".to_owned(), "h".to_owned())].into(), ..converged.clone() };
        assert!(!writes_nothing(true, false, &converged, &bins), "new binary hashes are recorded");
        let pending =
            State { pending: Some(Pending { started_unix: 1, pid: 2, restarts: vec![] }), ..converged.clone() };
        assert!(!writes_nothing(true, false, &pending, &converged), "a marker to clear");
    }

    #[test]
    fn a_long_error_is_cut_for_the_summary_only() {
        let short = "nginx -t failed";
        assert_eq!(summary_error(short), short);
        let long = "é".repeat(SUMMARY_ERROR_MAX * 3);
        let cut = summary_error(&long);
        assert!(cut.chars().count() < SUMMARY_ERROR_MAX + 120 && cut.contains("last-report.json"), "{}", cut.len());
    }

    #[test]
    fn no_exit_path_is_194() {
        // SSM reboots the machine and runs the command again when it exits 194.
        let codes = [
            exit::OK,
            exit::APPLY,
            exit::INVALID,
            exit::CONFLICT,
            exit::LOCKED,
            2,   /* clap usage */
            101, /* panic */
        ];
        assert!(!codes.contains(&194), "{codes:?}");
        let errors: Vec<anyhow::Error> = vec![
            anyhow::anyhow!("apply failed"),
            crate::decide::error::InvalidInput::new(crate::decide::error::Source::Flag("--x".into()), "bad").into(),
            anyhow::Error::from(crate::decide::error::InvalidInput::new(
                crate::decide::error::Source::Flag("--x".into()),
                "bad",
            ))
            .context("wrapped"),
        ];
        for e in &errors {
            let code = crate::decide::error::exit_code_of(e);
            assert!(codes.contains(&code) && code != 194, "{e:#}: {code}");
        }
        for checks in [vec![], vec![crate::decide::doctor::Check::new("x", crate::decide::doctor::Verdict::Fail, "")]] {
            assert_ne!(crate::decide::doctor::exit_code(&checks), 194);
        }
    }
}
