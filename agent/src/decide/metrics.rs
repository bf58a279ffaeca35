//! The Prometheus text exposition of the daemon's record and the units' states (pure).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::decide::daemon::record::DaemonRecord;

/// A label value with `\`, `"` and newlines escaped as the exposition format requires.
pub fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
        let labels = if labels.is_empty() { String::new() } else { format!("{{{}}}", labels.join(",")) };
        let _ = writeln!(self.0, "{name}{labels} {value}");
    }
}

/// Render every metric; `units` is unit → ActiveState (empty when systemd could not be asked).
pub fn render(d: &DaemonRecord, units: &BTreeMap<String, String>) -> String {
    let mut o = Out(String::new());
    o.family("agentkeys_hostd_up", "gauge", "1 while the daemon runs.");
    o.sample("agentkeys_hostd_up", &[], 1.0);
    o.family(
        "agentkeys_hostd_certificate_not_after_seconds",
        "gauge",
        "Expiry (unix time) of the certificate each host serves.",
    );
    for h in &d.hosts {
        if let Some(t) = h.not_after {
            o.sample("agentkeys_hostd_certificate_not_after_seconds", &[("host", &h.host)], t as f64);
        }
    }
    o.family(
        "agentkeys_hostd_certificate_renewal_seconds",
        "gauge",
        "When (unix time) each host's certificate is due for renewal (ARI or lifetime rule).",
    );
    for h in &d.hosts {
        if let Some(t) = h.renew_at {
            o.sample("agentkeys_hostd_certificate_renewal_seconds", &[("host", &h.host)], t as f64);
        }
    }
    o.family(
        "agentkeys_hostd_certificate_overdue",
        "gauge",
        "1 when the host's certificate is past its renewal time plus a grace, or under a tenth of its lifetime left.",
    );
    for h in d.hosts.iter().filter(|h| h.not_after.is_some()) {
        o.sample("agentkeys_hostd_certificate_overdue", &[("host", &h.host)], f64::from(u8::from(h.overdue)));
    }
    o.family(
        "agentkeys_hostd_certificate_ca_info",
        "gauge",
        "The CA (directory URL) that issued the host's certificate.",
    );
    for h in &d.hosts {
        if let Some(ca) = &h.ca {
            o.sample("agentkeys_hostd_certificate_ca_info", &[("host", &h.host), ("ca", ca)], 1.0);
        }
    }
    if let Some(e) = &d.escrow {
        o.family(
            "agentkeys_hostd_escrow_pending",
            "gauge",
            "1 while the stack's escrow could not be reached and the host's secrets wait to be escrowed or verified.",
        );
        o.sample("agentkeys_hostd_escrow_pending", &[("secret", &e.secret)], f64::from(u8::from(e.pending.is_some())));
        o.family(
            "agentkeys_hostd_escrow_verified_seconds",
            "gauge",
            "When (unix time) the escrow last held exactly the host's irreplaceable secrets.",
        );
        o.sample("agentkeys_hostd_escrow_verified_seconds", &[("secret", &e.secret)], e.verified_unix as f64);
    }
    o.family("agentkeys_hostd_certificate_https", "gauge", "1 when the host's vhost serves HTTPS.");
    for h in &d.hosts {
        o.sample("agentkeys_hostd_certificate_https", &[("host", &h.host)], f64::from(u8::from(h.state == "https")));
    }
    o.family(
        "agentkeys_hostd_acme_failed_orders",
        "gauge",
        "Consecutive failed ACME orders per host, by the class of the last failure.",
    );
    for h in &d.hosts {
        if let Some(l) = &h.ledger {
            let labels = [("host", h.host.as_str()), ("class", l.last_error_class.as_str())];
            o.sample("agentkeys_hostd_acme_failed_orders", &labels, f64::from(l.failures));
        }
    }
    o.family("agentkeys_hostd_reconciles_total", "counter", "Reconciles run by the daemon, by trigger.");
    for (trigger, n) in &d.reconciles {
        o.sample("agentkeys_hostd_reconciles_total", &[("trigger", trigger)], *n as f64);
    }
    o.family("agentkeys_hostd_reconcile_failures_total", "counter", "Failed reconciles, by failure class.");
    for (class, n) in &d.failures {
        o.sample("agentkeys_hostd_reconcile_failures_total", &[("class", class)], *n as f64);
    }
    o.family("agentkeys_hostd_drift_corrections_total", "counter", "Hand-edited files put back by drift checks.");
    o.sample("agentkeys_hostd_drift_corrections_total", &[], d.corrections as f64);
    if let Some(last) = &d.last {
        o.family("agentkeys_hostd_last_reconcile_success", "gauge", "1 when the last reconcile converged.");
        o.sample(
            "agentkeys_hostd_last_reconcile_success",
            &[("result", &last.result)],
            f64::from(u8::from(last.exit_code == 0)),
        );
        o.family("agentkeys_hostd_last_reconcile_duration_seconds", "gauge", "Duration of the last reconcile.");
        o.sample("agentkeys_hostd_last_reconcile_duration_seconds", &[], last.duration_ms as f64 / 1000.0);
        o.family("agentkeys_hostd_last_reconcile_timestamp_seconds", "gauge", "When the last reconcile finished.");
        o.sample("agentkeys_hostd_last_reconcile_timestamp_seconds", &[], last.finished_unix as f64);
    }
    if let Some(w) = &d.next_wake {
        o.family("agentkeys_hostd_next_wake_timestamp_seconds", "gauge", "When the daemon wakes next, and why.");
        o.sample("agentkeys_hostd_next_wake_timestamp_seconds", &[("trigger", &w.trigger)], w.at as f64);
    }
    o.family(
        "agentkeys_hostd_service_presence",
        "gauge",
        "1 for the presence of each optional service shipped here: on, waiting (a required input file is missing), invalid (an input is unusable) or off.",
    );
    for (unit, state) in &d.optional_services {
        o.sample("agentkeys_hostd_service_presence", &[("unit", unit), ("state", state)], 1.0);
    }
    o.family("agentkeys_hostd_unit_active", "gauge", "1 when a managed unit is active, by its ActiveState.");
    for (unit, state) in units {
        o.sample(
            "agentkeys_hostd_unit_active",
            &[("unit", unit), ("state", state)],
            f64::from(u8::from(state == "active")),
        );
    }
    o.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::acme_policy::HostSchedule;
    use crate::decide::daemon::record::LastReconcile;

    #[test]
    fn renders_every_family_with_escaped_labels() {
        let mut d = DaemonRecord::default();
        d.hosts.push(HostSchedule {
            host: "broker.example.org".into(),
            state: "https".into(),
            not_after: Some(1_800_000_000),
            renew_at: Some(1_790_000_000),
            renew_why: None,
            ari_next_check: None,
            ledger: None,
            overdue: true,
            ca: Some("https://ca.example/dir".into()),
            not_after_rfc3339: None,
            renew_at_rfc3339: None,
        });
        d.reconciles.insert("drift".into(), 3);
        d.failures.insert("health".into(), 1);
        d.last =
            Some(LastReconcile { result: "changed".into(), duration_ms: 1500, finished_unix: 7, ..Default::default() });
        d.escrow = Some(crate::decide::escrow::Record {
            secret: "agentkeys/escrow".into(),
            verified_unix: 9,
            pending: Some(crate::decide::escrow::PendingEscrow::default()),
            ..Default::default()
        });
        d.optional_services.insert("agentkeys-gate".into(), "waiting".into());
        let units = BTreeMap::from([("agentkeys-broker.service".to_owned(), "active".to_owned())]);
        let text = render(&d, &units);
        for line in [
            "agentkeys_hostd_certificate_not_after_seconds{host=\"broker.example.org\"} 1800000000",
            "agentkeys_hostd_certificate_renewal_seconds{host=\"broker.example.org\"} 1790000000",
            "agentkeys_hostd_certificate_overdue{host=\"broker.example.org\"} 1",
            "agentkeys_hostd_certificate_ca_info{host=\"broker.example.org\",ca=\"https://ca.example/dir\"} 1",
            "agentkeys_hostd_reconciles_total{trigger=\"drift\"} 3",
            "agentkeys_hostd_reconcile_failures_total{class=\"health\"} 1",
            "agentkeys_hostd_last_reconcile_success{result=\"changed\"} 1",
            "agentkeys_hostd_last_reconcile_duration_seconds 1.5",
            "agentkeys_hostd_unit_active{unit=\"agentkeys-broker.service\",state=\"active\"} 1",
            "agentkeys_hostd_escrow_pending{secret=\"agentkeys/escrow\"} 1",
            "agentkeys_hostd_escrow_verified_seconds{secret=\"agentkeys/escrow\"} 9",
            "agentkeys_hostd_service_presence{unit=\"agentkeys-gate\",state=\"waiting\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
        }
        // Every sample belongs to a declared family.
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            let name = l.split(['{', ' ']).next().unwrap_or_default();
            assert!(text.contains(&format!("# TYPE {name} ")), "{name} has no TYPE line");
        }
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn the_alert_rules_use_only_metrics_the_daemon_exports() {
        let rules = include_str!("../../../packaging/prometheus/agentkeys-hostd.rules.yml");
        let mut d = DaemonRecord::default();
        d.hosts.push(HostSchedule {
            host: "h".into(),
            state: "https".into(),
            not_after: Some(2),
            renew_at: Some(1),
            renew_why: None,
            ari_next_check: None,
            ledger: None,
            overdue: false,
            ca: None,
            not_after_rfc3339: None,
            renew_at_rfc3339: None,
        });
        d.last = Some(LastReconcile::default());
        d.escrow = Some(crate::decide::escrow::Record::default());
        let text = render(&d, &BTreeMap::new());
        let used: Vec<&str> = rules
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("agentkeys_hostd_"))
            .collect();
        assert!(used.len() >= 4, "{used:?}");
        for name in used {
            assert!(
                text.contains(&format!("# TYPE {name} ")),
                "the rules use {name}, which the daemon does not export"
            );
        }
    }
}
