//! When the daemon wakes next and why (pure): certificate renewal times (not polling), the next
//! allowed ACME attempt, ARI re-checks, the drift interval and the configuration debounce.

use std::path::Path;

use serde::Serialize;

use crate::decide::acme_policy::HostSchedule;

/// What made the daemon reconcile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// The first converge after the daemon started.
    Start,
    /// The periodic check that corrects hand edits of files hostd owns.
    Drift,
    /// A certificate's renewal time (or its next allowed attempt, or an ARI re-check) arrived.
    Renewal,
    /// hostd's configuration or templates changed on disk.
    Config,
    /// `SIGHUP` / `systemctl reload`.
    Reload,
}

impl Trigger {
    pub fn name(self) -> &'static str {
        match self {
            Trigger::Start => "start",
            Trigger::Drift => "drift",
            Trigger::Renewal => "renewal",
            Trigger::Config => "config",
            Trigger::Reload => "reload",
        }
    }
}

/// The next wake-up: unix time, trigger, and a reason an operator can read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Wake {
    pub at: i64,
    pub trigger: Trigger,
    pub why: String,
}

/// The earliest certificate event after `last_run` (events at or before it were already tried by
/// that run; a host that could not renew then is retried by the drift check, never in a loop).
/// `jitter` in [0, 1) spreads a fleet: at most `max_spread` seconds, and at most a tenth of the time
/// left between the renewal time and expiry.
pub(crate) fn renewal_wake(hosts: &[HostSchedule], last_run: i64, jitter: f64, max_spread: i64) -> Option<Wake> {
    let mut best: Option<Wake> = None;
    for h in hosts {
        let mut events = Vec::new();
        if let Some(at) = h.renew_at {
            let retry = h.ledger.as_ref().map_or(at, |l| at.max(l.next_attempt));
            let room = h.not_after.map_or(0, |end| (end - retry).max(0) / 10);
            let spread = ((max_spread.min(room)) as f64 * jitter.clamp(0.0, 0.999)) as i64;
            let why = if retry > at {
                format!("{}: next allowed ACME attempt after a failed order", h.host)
            } else {
                format!("{}: renewal time ({})", h.host, h.renew_why.as_deref().unwrap_or("lifetime rule"))
            };
            events.push((retry + spread, why));
        }
        if let Some(at) = h.ari_next_check {
            events.push((at, format!("{}: ask the CA for its renewal window again", h.host)));
        }
        for (at, why) in events {
            if at > last_run && best.as_ref().is_none_or(|b| at < b.at) {
                best = Some(Wake { at, trigger: Trigger::Renewal, why });
            }
        }
    }
    best
}

/// The next wake among the drift check, a renewal event and a pending debounce (earliest wins;
/// on a tie the more specific reason is kept).
pub fn next_wake(next_drift: i64, renewal: Option<Wake>, debounce_until: Option<i64>) -> Wake {
    let mut wake = Wake { at: next_drift, trigger: Trigger::Drift, why: "periodic drift check".into() };
    if let Some(r) = renewal.filter(|r| r.at <= wake.at) {
        wake = r;
    }
    if let Some(at) = debounce_until.filter(|at| *at <= wake.at) {
        wake = Wake { at, trigger: Trigger::Config, why: "configuration changed".into() };
    }
    wake
}

/// Is `rel` (relative to `/etc/agentkeys`) hostd's own configuration or a template override?
/// Files hostd renders there itself (env files) must not trigger it, or it would chase its tail.
pub(crate) fn is_config_path(rel: &Path) -> bool {
    let Some(name) = rel.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    let parent = rel.parent().and_then(|p| p.to_str()).unwrap_or_default();
    match parent {
        "" => name == "hostd.toml",
        "hostd.d" => name.ends_with(".toml") && !name.starts_with('.'),
        "templates" => name.ends_with(".tera"),
        // An operator input of a service that takes some (an editor's swap or backup file is not).
        dir => {
            crate::decide::catalog::SERVICES
                .iter()
                .any(|s| !s.inputs.is_empty() && crate::decide::catalog::input_dir(s).ends_with(&format!("/{dir}")))
                && !name.starts_with('.')
                && !name.ends_with('~')
                && !name.ends_with(".swp")
        }
    }
}

/// Is `rel` (relative to hostd's state directory) an input of the renewal schedule: a certificate,
/// the failure ledger, the ARI cache or the identity record?
pub(crate) fn is_schedule_input(rel: &Path) -> bool {
    let s = rel.to_str().unwrap_or_default();
    s.starts_with("tls/") || matches!(s, "identity.json" | "acme/ledger.json" | "acme/renewal-info.json")
}

/// Whether the daemon converges at all. A deployed identity is kept converged; a virgin host is
/// bootstrapped only when hostd.toml names its stack explicitly. A zone alone is not a declaration:
/// "no selector" means prod, and a daemon that made every virgin host with a fleet-wide zone
/// drop-in a prod broker would be the worst default. Without either it waits for `reconcile`.
pub fn converges(deployed: bool, stack_configured: bool) -> bool {
    deployed || stack_configured
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::acme_policy::Ledger;

    #[test]
    fn a_virgin_host_is_bootstrapped_only_with_an_explicit_stack() {
        assert!(converges(true, false), "a deployed identity is kept converged");
        assert!(converges(false, true), "[identity] stack declares a virgin host");
        assert!(!converges(false, false), "a zone alone (no stack) waits for `reconcile`");
    }

    fn host(name: &str, renew_at: i64, not_after: i64) -> HostSchedule {
        HostSchedule {
            host: name.into(),
            state: "https".into(),
            not_after: Some(not_after),
            renew_at: Some(renew_at),
            renew_why: Some("1/3 of the lifetime certificate left".into()),
            ari_next_check: None,
            ledger: None,
            overdue: false,
            ca: None,
            not_after_rfc3339: None,
            renew_at_rfc3339: None,
        }
    }

    #[test]
    fn earliest_renewal_after_the_last_run_wins() {
        let hosts = [host("a.example.org", 5_000, 9_000), host("b.example.org", 3_000, 9_000)];
        let w = renewal_wake(&hosts, 1_000, 0.0, 300).expect("a wake");
        assert_eq!((w.at, w.trigger), (3_000, Trigger::Renewal));
        assert!(w.why.starts_with("b.example.org: renewal time"), "{}", w.why);
        // b was already tried by the last run (at 3_500): a is next, b waits for the drift check.
        let w = renewal_wake(&hosts, 3_500, 0.0, 300).expect("a wake");
        assert_eq!(w.at, 5_000);
        assert!(renewal_wake(&hosts, 9_000, 0.0, 300).is_none());
    }

    #[test]
    fn a_failed_order_waits_for_its_next_allowed_attempt() {
        let mut h = host("a.example.org", 3_000, 90_000);
        h.ledger = Some(Ledger {
            failures: 2,
            last_error_class: "unauthorized".into(),
            next_attempt: 10_800,
            ..Default::default()
        });
        let w = renewal_wake(&[h], 3_000, 0.0, 300).expect("a wake");
        assert_eq!(w.at, 10_800);
        assert!(w.why.contains("next allowed ACME attempt"), "{}", w.why);
    }

    #[test]
    fn jitter_is_bounded_by_the_cap_and_the_time_left() {
        let hosts = [host("a.example.org", 1_000, 1_000_000)];
        assert_eq!(renewal_wake(&hosts, 0, 0.5, 300).map(|w| w.at), Some(1_150));
        // A 40 s certificate renewing at 20 s: at most 2 s of spread (a tenth of what is left).
        let short = [host("a.example.org", 20, 40)];
        assert_eq!(renewal_wake(&short, 0, 0.99, 300).map(|w| w.at), Some(21));
    }

    #[test]
    fn ari_rechecks_are_events_too() {
        let mut h = host("a.example.org", 50_000, 90_000);
        h.ari_next_check = Some(7_200);
        let w = renewal_wake(&[h], 0, 0.0, 300).expect("a wake");
        assert_eq!(w.at, 7_200);
        assert!(w.why.contains("renewal window again"));
    }

    #[test]
    fn next_wake_picks_the_earliest() {
        let r = Some(Wake { at: 500, trigger: Trigger::Renewal, why: "x".into() });
        assert_eq!(next_wake(1_000, r.clone(), None).trigger, Trigger::Renewal);
        assert_eq!(next_wake(1_000, r.clone(), Some(400)).trigger, Trigger::Config);
        assert_eq!(next_wake(300, r, Some(400)).trigger, Trigger::Drift);
        assert_eq!(next_wake(300, None, None).at, 300);
    }

    #[test]
    fn schedule_inputs() {
        for yes in ["tls/broker.example.org/current", "acme/ledger.json", "identity.json"] {
            assert!(is_schedule_input(Path::new(yes)), "{yes}");
        }
        for no in ["state.json", "last-report.json", "acme/account.json", "acme-webroot/x"] {
            assert!(!is_schedule_input(Path::new(no)), "{no}");
        }
    }

    #[test]
    fn only_config_templates_and_operator_inputs_are_watched() {
        for yes in [
            "hostd.toml",
            "hostd.d/10-acme.toml",
            "templates/nginx-vhost.conf.tera",
            "gate/upstream-api-key",
            "mcp-server/vendor-tokens",
            "worker-channel-weixin/contacts.json",
        ] {
            assert!(is_config_path(Path::new(yes)), "{yes}");
        }
        for no in [
            "agentkeys-broker.env",
            "hostd.toml.swp",
            "hostd.d/.10-acme.toml.swx",
            "templates/notes.txt",
            "hostd.d/sub/x.toml",
            "hostd.d/.#10-acme.toml",
            "gate/.upstream-api-key.swp",
            "gate/keys.json~",
            "broker/key",
            "gate.env",
            "",
        ] {
            assert!(!is_config_path(Path::new(no)), "{no}");
        }
    }
}
