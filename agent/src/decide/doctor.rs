//! `doctor` verdicts (pure, spec §10): each pre-flight check is pass/warn/fail with what to do;
//! the thresholds for disk and clock live here, the facts are gathered by `cli::doctor_cmd` (DNS through `host::dns_facts`, as the
//! certificate step gathers them).

use std::fmt::Write as _;

use serde::Serialize;

use crate::decide::acme_policy::{DnsVerdict, HostSchedule};
use crate::decide::times;
use std::net::Ipv4Addr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Warn,
    Fail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub name: String,
    pub verdict: Verdict,
    pub detail: String,
}

impl Check {
    pub fn new(name: impl Into<String>, verdict: Verdict, detail: impl Into<String>) -> Self {
        Self { name: name.into(), verdict, detail: detail.into() }
    }
}

const MIB: u64 = 1024 * 1024;

/// Free space under `path`: a release (~100 MiB) plus its predecessor must fit.
pub fn disk(path: &str, free_bytes: u64) -> Check {
    let mib = free_bytes / MIB;
    let (verdict, hint) = match mib {
        m if m < 256 => (Verdict::Fail, "; free space before the next release (old releases, journal)"),
        m if m < 1024 => (Verdict::Warn, "; less than 1 GiB left"),
        _ => (Verdict::Pass, ""),
    };
    Check::new(format!("disk {path}"), verdict, format!("{mib} MiB free{hint}"))
}

/// An optional service's presence: waiting for an input warns (the run is not a failure, the
/// service does not run), an unusable input fails; one not in the release is not checked.
pub fn optional_service(unit: &str, p: &crate::decide::inputs::Presence) -> Option<Check> {
    use crate::decide::inputs::Presence;
    let name = format!("service {unit}");
    match p {
        Presence::NotShipped => None,
        Presence::On => Some(Check::new(name, Verdict::Pass, "on: shipped, and every required input present")),
        Presence::Off => Some(Check::new(name, Verdict::Pass, p.describe(unit))),
        Presence::Waiting { missing } => Some(Check::new(
            name,
            Verdict::Warn,
            format!(
                "waiting: {} missing; put it there (root, mode 0600) and the next run starts it",
                missing.join(", ")
            ),
        )),
        Presence::Invalid { error } => Some(Check::new(name, Verdict::Fail, error.clone())),
    }
}

/// One host's DNS check from the certificate step's own verdict: parked hosts warn (no order
/// until the record points here), a verdict that could not be reached fails.
pub(crate) fn dns(host: &str, ip: Ipv4Addr, verdict: Result<DnsVerdict, String>) -> Check {
    let name = format!("dns {host}");
    match verdict {
        Ok(DnsVerdict::Ready) => Check::new(name, Verdict::Pass, format!("A record is {ip}")),
        Ok(DnsVerdict::DnsNotReady { expected, found, detail }) => Check::new(
            name,
            Verdict::Warn,
            format!(
                "{detail}: expected {expected}, found [{}]; parked (no order) until it points here",
                found.join(", ")
            ),
        ),
        Err(e) => Check::new(name, Verdict::Fail, e),
    }
}

/// One host's certificate in service: overdue (past its renewal time plus the grace, or under a
/// tenth of its lifetime) or expired fails — no CA e-mails about expiry any more.
pub(crate) fn certificate(s: &HostSchedule, now: i64) -> Option<Check> {
    let not_after = s.not_after?;
    let name = format!("certificate {}", s.host);
    let renew = s.renew_at.map(|t| format!("renewal {}", times::when(t, now))).unwrap_or_default();
    let ledger = s.ledger.as_ref().map_or(String::new(), |l| {
        format!(
            "; {} failed order(s), last {}, next attempt {}",
            l.failures,
            l.last_error_class,
            times::when(l.next_attempt, now)
        )
    });
    Some(if not_after <= now {
        Check::new(
            name,
            Verdict::Fail,
            format!("expired {}{ledger}; run reconcile and check the CA", times::when(not_after, now)),
        )
    } else if s.overdue {
        Check::new(
            name,
            Verdict::Fail,
            format!(
                "overdue: {renew}, expires {}{ledger}; check the ACME ledger (status) and the CA",
                times::when(not_after, now)
            ),
        )
    } else {
        Check::new(name, Verdict::Pass, format!("expires {}, {renew}", times::when(not_after, now)))
    })
}

/// A host the CA paused: no order until the operator lifts it at the URL.
pub(crate) fn pause(s: &HostSchedule) -> Option<Check> {
    let url = s.ledger.as_ref()?.unpause_url.as_ref()?;
    Some(Check::new(
        format!("acme {}", s.host),
        Verdict::Fail,
        format!("paused by the CA: lift it at {url}, then run reconcile --unpaused {}", s.host),
    ))
}

/// Clock skew against the ACME CA's `Date` header (certificates are checked against it).
pub fn clock(skew_secs: i64) -> Check {
    let verdict = match skew_secs.abs() {
        s if s > 300 => Verdict::Fail,
        s if s > 30 => Verdict::Warn,
        _ => Verdict::Pass,
    };
    let hint = if verdict == Verdict::Pass { "" } else { "; enable time sync (chrony or systemd-timesyncd)" };
    Check::new("clock", verdict, format!("{skew_secs:+} s against the ACME CA's clock{hint}"))
}

/// The system trust store: the broker loads the native roots at start and panics when none parse.
/// `certs` is the number of certificates in the bundle, `None` when it cannot be read.
pub(crate) fn trust_store(bundle: &str, certs: Option<usize>) -> Check {
    match certs {
        Some(n) if n > 0 => Check::new("trust store", Verdict::Pass, format!("{n} certificates in {bundle}")),
        found => Check::new(
            "trust store",
            Verdict::Fail,
            format!(
                "{} in {bundle}: the broker cannot start without the system trust store; \
                 apt-get install ca-certificates",
                if found.is_some() { "no certificate" } else { "cannot read the bundle" }
            ),
        ),
    }
}

/// The last recorded run: a failed one fails `doctor` (naming its error) until a run succeeds; a
/// rollback warns (the previous release serves, the new one did not come up).
pub fn last_run(last: Option<&crate::decide::state::LastRun>, now: i64) -> Check {
    let Some(r) = last else {
        return Check::new("last run", Verdict::Warn, "no reconcile recorded yet (run agentkeys-hostd reconcile)");
    };
    let at = times::when(i64::try_from(r.finished_unix).unwrap_or_default(), now);
    let error = r.summary.get("error").and_then(|e| e.as_str()).unwrap_or("no error recorded");
    match r.result.as_str() {
        "failed" => Check::new(
            "last run",
            Verdict::Fail,
            format!(
                "the last reconcile ({at}) failed: {error}; fix the cause and run reconcile (details: last-report.json)"
            ),
        ),
        "rolled_back" => Check::new(
            "last run",
            Verdict::Warn,
            format!("the last reconcile ({at}) rolled back to the previous release: {error}"),
        ),
        other => Check::new("last run", Verdict::Pass, format!("the last reconcile ({at}): {other}")),
    }
}

/// Whether nginx serves a host's installed certificate: what the handshake on 443 returned.
pub fn served(host: &str, outcome: Result<bool, String>) -> Check {
    let name = format!("https {host}");
    match outcome {
        Ok(true) => Check::new(name, Verdict::Pass, "nginx serves the installed certificate on 443"),
        Ok(false) => Check::new(
            name,
            Verdict::Fail,
            "nginx serves another certificate than the one installed: run reconcile (it reloads nginx)",
        ),
        Err(e) => Check::new(
            name,
            Verdict::Fail,
            format!("a certificate is installed but 127.0.0.1:443 does not serve it ({e}): run reconcile"),
        ),
    }
}

/// The worst verdict decides the exit code: 0 when nothing failed, 1 otherwise.
pub fn exit_code(checks: &[Check]) -> i32 {
    i32::from(checks.iter().any(|c| c.verdict == Verdict::Fail))
}

pub(crate) fn render_text(checks: &[Check]) -> String {
    let mut t = String::new();
    for c in checks {
        let tag = match c.verdict {
            Verdict::Pass => "pass",
            Verdict::Warn => "WARN",
            Verdict::Fail => "FAIL",
        };
        let _ = writeln!(t, "{tag}  {:<34} {}", c.name, c.detail);
    }
    let count = |v| checks.iter().filter(|c| c.verdict == v).count();
    let _ = writeln!(
        t,
        "{} passed, {} warnings, {} failed",
        count(Verdict::Pass),
        count(Verdict::Warn),
        count(Verdict::Fail)
    );
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trust_store_needs_a_certificate() {
        assert_eq!(trust_store("/b", Some(140)).verdict, Verdict::Pass);
        for found in [Some(0), None] {
            let c = trust_store("/b", found);
            assert_eq!(c.verdict, Verdict::Fail);
            assert!(c.detail.contains("ca-certificates") && c.detail.contains("/b"), "{}", c.detail);
        }
    }

    #[test]
    fn thresholds() {
        assert_eq!(disk("/opt", 100 * MIB).verdict, Verdict::Fail);
        assert_eq!(disk("/opt", 512 * MIB).verdict, Verdict::Warn);
        assert_eq!(disk("/opt", 4096 * MIB).verdict, Verdict::Pass);
        assert_eq!(clock(2).verdict, Verdict::Pass);
        assert_eq!(clock(-45).verdict, Verdict::Warn);
        assert_eq!(clock(400).verdict, Verdict::Fail);
        assert!(clock(400).detail.contains("time sync"));
    }

    #[test]
    fn an_optional_service_waiting_warns_and_an_unusable_input_fails() {
        use crate::decide::inputs::Presence;
        let waiting = Presence::Waiting { missing: vec!["/etc/agentkeys/gate/keys.json".into()] };
        let c = optional_service("agentkeys-gate", &waiting).expect("checked");
        assert_eq!((c.name.as_str(), c.verdict), ("service agentkeys-gate", Verdict::Warn));
        assert!(c.detail.contains("/etc/agentkeys/gate/keys.json"), "{}", c.detail);
        let bad = Presence::Invalid { error: "…/vendor-tokens: entry 2 is not vendor:token".into() };
        assert_eq!(optional_service("agentkeys-mcp-server", &bad).expect("checked").verdict, Verdict::Fail);
        assert_eq!(optional_service("agentkeys-gate", &Presence::Off).expect("checked").verdict, Verdict::Pass);
        assert_eq!(optional_service("agentkeys-gate", &Presence::NotShipped), None, "not in the release: silent");
    }

    #[test]
    fn exit_code_and_text() {
        let checks = vec![Check::new("nginx", Verdict::Pass, "ok"), Check::new("port 80", Verdict::Warn, "x")];
        assert_eq!(exit_code(&checks), 0);
        let mut failing = checks.clone();
        failing.push(Check::new("clock", Verdict::Fail, "off"));
        assert_eq!(exit_code(&failing), 1);
        let text = render_text(&failing);
        assert!(text.contains("FAIL  clock") && text.ends_with("1 passed, 1 warnings, 1 failed\n"), "{text}");
    }

    #[test]
    fn dns_checks_follow_the_certificate_steps_verdict() {
        let ip: Ipv4Addr = "127.0.0.1".parse().expect("ip");
        assert_eq!(dns("a.example.org", ip, Ok(DnsVerdict::Ready)).verdict, Verdict::Pass);
        let parked = DnsVerdict::DnsNotReady {
            expected: "127.0.0.1".into(),
            found: vec!["127.0.0.9".into()],
            detail: "points elsewhere".into(),
        };
        let c = dns("a.example.org", ip, Ok(parked));
        assert_eq!((c.name.as_str(), c.verdict), ("dns a.example.org", Verdict::Warn));
        assert!(c.detail.contains("found [127.0.0.9]; parked"), "{}", c.detail);
        assert_eq!(dns("a.example.org", ip, Err("no resolver".into())).verdict, Verdict::Fail);
    }

    #[test]
    fn certificates_pass_until_overdue_or_expired() {
        let now = 1_800_000_000;
        let s = HostSchedule {
            host: "broker.example.org".into(),
            state: "https".into(),
            not_after: Some(now + 40 * 86_400),
            renew_at: Some(now + 10 * 86_400),
            renew_why: None,
            not_after_rfc3339: None,
            renew_at_rfc3339: None,
            ari_next_check: None,
            ledger: None,
            overdue: false,
            ca: None,
        };
        let ok = certificate(&s, now).expect("a check");
        assert_eq!(ok.verdict, Verdict::Pass);
        assert!(ok.detail.contains("(in 40 d)") && ok.detail.contains("renewal "), "{}", ok.detail);
        let late = HostSchedule { overdue: true, ..s.clone() };
        assert_eq!(certificate(&late, now).expect("check").verdict, Verdict::Fail);
        let gone = HostSchedule { not_after: Some(now - 3_600), ..s.clone() };
        assert!(certificate(&gone, now).expect("check").detail.starts_with("expired "));
        assert!(certificate(&HostSchedule { not_after: None, ..s }, now).is_none(), "nothing served: DNS says why");
    }

    #[test]
    fn a_paused_host_fails_with_its_url() {
        let mut s = HostSchedule {
            host: "broker.example.org".into(),
            state: "http-placeholder".into(),
            not_after: None,
            renew_at: None,
            renew_why: None,
            not_after_rfc3339: None,
            renew_at_rfc3339: None,
            ari_next_check: None,
            ledger: None,
            overdue: false,
            ca: None,
        };
        assert!(pause(&s).is_none());
        s.ledger = Some(crate::decide::acme_policy::Ledger {
            unpause_url: Some("https://ca.example/unpause?j=1".into()),
            ..Default::default()
        });
        let c = pause(&s).expect("a check");
        assert_eq!(c.verdict, Verdict::Fail);
        assert!(
            c.detail.contains("https://ca.example/unpause?j=1") && c.detail.contains("--unpaused broker.example.org")
        );
    }

    #[test]
    fn a_failed_last_run_fails_doctor_naming_its_error() {
        use crate::decide::state::LastRun;
        let run = |result: &str| LastRun {
            result: result.into(),
            finished_unix: 100,
            duration_ms: 1,
            summary: serde_json::json!({"error": "nginx -t rejected the configuration: [warn] listen http2"}),
        };
        let failed = last_run(Some(&run("failed")), 160);
        assert_eq!(failed.verdict, Verdict::Fail);
        assert!(failed.detail.contains("[warn] listen http2"), "{}", failed.detail);
        assert_eq!(last_run(Some(&run("rolled_back")), 160).verdict, Verdict::Warn);
        assert_eq!(last_run(Some(&run("changed")), 160).verdict, Verdict::Pass);
        assert_eq!(last_run(Some(&run("converged")), 160).verdict, Verdict::Pass);
        assert_eq!(last_run(None, 160).verdict, Verdict::Warn);
        assert_eq!(served("a.example", Ok(true)).verdict, Verdict::Pass);
        assert_eq!(served("a.example", Ok(false)).verdict, Verdict::Fail);
        assert!(served("a.example", Err("connection refused".into())).detail.contains("connection refused"));
    }
}
