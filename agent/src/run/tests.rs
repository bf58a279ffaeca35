//! In-process tests of the run against the fake manager: a first converge, a no-op second run,
//! a release whose broker fails to start rolled back, and an unhealthy service failing the gate.

use super::decide::{FailureClass, RunResult};
use super::testhost::TestHost;
use crate::host::releases;
use crate::host::systemd::Job;

#[test]
fn a_first_run_starts_everything_and_a_second_does_nothing() {
    let h = TestHost::new();
    let a = h.release("1.0.0");
    let first = h.reconcile(&TestHost::ask(Some(&a))).expect("run");
    assert!(first.error.is_none(), "{:?}", first.error);
    assert_eq!(first.result(), RunResult::Changed);
    let log = h.sd.take_log();
    assert_eq!(log.first().map(String::as_str), Some("daemon-reload"), "{log:?}");
    let starts: Vec<&String> = log.iter().filter(|l| l.starts_with("Start ")).collect();
    let required = crate::decide::catalog::SERVICES.iter().filter(|s| !s.optional).count();
    assert_eq!(starts.len(), required + 1, "every service and nginx: {log:?}");
    assert_eq!(first.summary.healthy, Some(required));
    assert!(h.root.path(crate::host::state::STATE_FILE).exists());

    let second = h.reconcile(&TestHost::ask(Some(&a))).expect("run");
    assert_eq!(second.result(), RunResult::Converged, "{:?}", second.error);
    assert!(h.sd.take_log().iter().all(|l| !l.starts_with("Start") && !l.starts_with("Restart")));
}

#[test]
fn a_release_whose_broker_fails_is_rolled_back() {
    let h = TestHost::new();
    let (a, b) = (h.release("1.0.0"), h.release("1.1.0"));
    assert!(h.reconcile(&TestHost::ask(Some(&a))).expect("run").error.is_none());
    let good = releases::current(&h.root).expect("a release");
    let root = h.root.clone();
    let bad_release = b.clone();
    h.sd.fail_when(move |job, unit| {
        // The broker of release 1.1.0 exits at start; the previous one runs.
        let current = releases::current(&root).unwrap_or_default();
        job != Job::Stop && unit == "agentkeys-broker.service" && current.contains("1.1.0") && bad_release.exists()
    });
    h.sd.take_log();
    let report = h.reconcile(&TestHost::ask(Some(&b))).expect("run");
    assert_eq!(report.result(), RunResult::RolledBack, "{:?}", report.error);
    assert_eq!(report.failure_class(), Some(FailureClass::RolledBack));
    assert_eq!(releases::current(&h.root).as_deref(), Some(good.as_str()), "the previous release serves");
    let error = format!("{:#}", report.error.as_ref().expect("the failure is reported"));
    assert!(error.contains("agentkeys-broker.service") && error.contains("is serving again"), "{error}");
    let log = h.sd.take_log();
    let broker: Vec<&str> =
        log.iter().map(String::as_str).filter(|l| l.ends_with(" agentkeys-broker.service")).collect();
    assert_eq!(
        broker,
        ["Restart agentkeys-broker.service", "Start agentkeys-broker.service"],
        "the failed restart, then the rollback's start: {log:?}"
    );
    assert!(report.done.iter().any(|d| d.starts_with("rollback: switched back")), "{:?}", report.done);
    let state = crate::host::state::read(&h.root).expect("state");
    assert!(state.pending.is_none(), "a verified rollback leaves nothing to finish");
}

#[test]
fn a_release_whose_broker_runs_unhealthy_is_rolled_back_and_restarted() {
    let h = TestHost::new();
    let (a, b) = (h.release("1.0.0"), h.release("1.1.0"));
    assert!(h.reconcile(&TestHost::ask(Some(&a))).expect("run").error.is_none());
    // The broker of 1.1.0 runs but answers 500 until it is restarted from another release.
    let (root, sd) = (h.root.clone(), std::rc::Rc::downgrade(&h.sd));
    h.sd.on_start(move |unit| {
        if unit == "agentkeys-broker.service"
            && let Some(sd) = sd.upgrade()
        {
            sd.set_unhealthy(unit, releases::current(&root).unwrap_or_default().starts_with("1.1.0"));
        }
    });
    h.sd.take_log();
    let report = h.reconcile(&TestHost::ask(Some(&b))).expect("run");
    assert_eq!(report.result(), RunResult::RolledBack, "{:?}", report.error);
    let log = h.sd.take_log();
    let broker = log.iter().filter(|l| *l == "Restart agentkeys-broker.service").count();
    assert_eq!(broker, 2, "the release's restart, then the rollback's (it still runs the bad build): {log:?}");
    let unhealthy: Vec<&str> = report.health.iter().filter(|v| !v.ok).map(|v| v.unit.as_str()).collect();
    assert_eq!(unhealthy, ["agentkeys-broker.service"], "the report shows the gate that failed the release");
    assert_eq!(report.summary.release.as_deref().map(|r| r.starts_with("1.0.0")), Some(true));
}

#[test]
fn an_unhealthy_service_fails_the_gate_and_the_next_run_finishes() {
    let h = TestHost::new();
    let a = h.release("1.0.0");
    h.sd.set_unhealthy("agentkeys-worker-email.service", true);
    let report = h.reconcile(&TestHost::ask(Some(&a))).expect("run");
    assert_eq!(report.result(), RunResult::Failed);
    assert_eq!(report.failure_class(), Some(FailureClass::Health));
    assert_eq!(report.summary.unhealthy.keys().collect::<Vec<_>>(), ["agentkeys-worker-email.service"]);
    let state = crate::host::state::read(&h.root).expect("state");
    assert!(state.pending.is_some(), "the restarts stay pending for the next run");

    h.sd.set_unhealthy("agentkeys-worker-email.service", false);
    let again = h.reconcile(&TestHost::ask(Some(&a))).expect("run");
    assert!(again.error.is_none(), "{:?}", again.error);
    assert!(crate::host::state::read(&h.root).expect("state").pending.is_none());
}

#[test]
fn a_dry_run_plans_and_changes_nothing() {
    let h = TestHost::new();
    let mut ask = TestHost::ask(None);
    ask.dry_run = true;
    let report = h.reconcile(&ask).expect("run");
    assert_eq!(report.result(), RunResult::Planned);
    assert!(!report.plan.is_empty());
    assert!(h.sd.take_log().is_empty(), "no job in a dry run");
    assert!(!h.root.path(crate::host::state::STATE_FILE).exists());
}

#[test]
fn a_reload_an_interrupted_run_owed_is_done_by_the_next() {
    let h = TestHost::new();
    let a = h.release("1.0.0");
    assert!(h.reconcile(&TestHost::ask(Some(&a))).expect("run").error.is_none());
    h.sd.take_log();
    // As a run killed after installing a certificate leaves it: nginx owes a reload.
    let mut saved = crate::host::state::read(&h.root).expect("state");
    saved.pending = Some(crate::decide::state::Pending { started_unix: 1, pid: 2, restarts: vec!["nginx".into()] });
    crate::host::state::write(&h.root, &saved).expect("write");
    let report = h.reconcile(&TestHost::ask(Some(&a))).expect("run");
    assert!(report.error.is_none(), "{:?}", report.error);
    assert_eq!(h.sd.take_log(), ["Reload nginx.service"], "only the owed reload");
    assert!(crate::host::state::read(&h.root).expect("state").pending.is_none());
}

#[test]
fn the_summary_stays_inside_ssms_output_cap_when_everything_fails() {
    let h = TestHost::new();
    let a = h.release("1.0.0");
    // Every service fails its health check, each with a long answer.
    for s in crate::decide::catalog::SERVICES {
        h.sd.set_unhealthy(&format!("{}.service", s.unit), true);
    }
    let report = h.reconcile(&TestHost::ask(Some(&a))).expect("run");
    assert_eq!(report.result(), RunResult::Failed);
    let mut summary = serde_json::to_value(&report.summary).expect("json");
    // The worst case the fake cannot produce: an error of a megabyte, every host's TLS failing.
    summary["error"] = crate::decide::run::summary_error(&"x".repeat(1 << 20)).into();
    let hosts = crate::decide::naming::identity_from_issuer("https://broker.litentry.org").expect("issuer").dns_hosts();
    for host in hosts {
        summary["tls"][host.as_str()] = "self_check_failed".into();
        summary["paused"][host.as_str()] =
            format!("https://portal.example/sfe/v1/unpause?jwt={}", "e".repeat(900)).into();
        summary["ca"][host.as_str()] = "https://acme-v02.api.letsencrypt.org/directory".into();
    }
    let line = serde_json::to_string(&summary).expect("json");
    eprintln!("worst-case summary line: {} characters (SSM keeps 24,000)", line.len());
    assert!(line.len() < 24_000, "{}", line.len());
}

#[test]
fn a_binary_is_installed_with_the_mode_its_manifest_signs() {
    let h = TestHost::new();
    let a = h.release("1.0.0");
    let manifest = a.join(crate::decide::release::MANIFEST);
    let text = std::fs::read_to_string(&manifest).expect("manifest");
    let with_mode = text.replacen("[binaries]", "[modes]\nagentkeys-bundler = \"0550\"\n[binaries]", 1);
    std::fs::write(&manifest, with_mode).expect("write");
    let report = h.reconcile(&TestHost::ask(Some(&a))).expect("run");
    assert!(report.error.is_none(), "{:?}", report.error);
    let id = releases::current(&h.root).expect("a release");
    let mode = |bin: &str| {
        let meta = std::fs::metadata(h.root.path(&format!("/opt/agentkeys/releases/{id}/bin/{bin}"))).expect("bin");
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o7777
    };
    assert_eq!((mode("agentkeys-bundler"), mode("agentkeys-broker-server")), (0o550, 0o755));
}
