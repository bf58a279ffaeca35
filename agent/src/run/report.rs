//! The one-line JSON summary (first line of stdout with `--json`) and the human report.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::decide::inputs::Presence;
use crate::decide::naming::Stack;
use crate::decide::plan::Action;
use crate::decide::run::RunResult;
use crate::run::prepare::Prepared;

#[derive(Debug, Serialize)]
pub struct IdentitySummary {
    pub stack: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slot: Option<u32>,
    pub zone: String,
    pub issuer: String,
}

#[derive(Debug, Serialize)]
pub struct Summary {
    /// `planned` (dry run), `converged` (nothing to do), `changed`, `failed` or `rolled_back`.
    pub result: RunResult,
    pub identity: IdentitySummary,
    pub changed: usize,
    pub unchanged: usize,
    pub failed: usize,
    pub parked: usize,
    /// unit → reasons.
    pub restarts: BTreeMap<String, Vec<String>>,
    /// host → TLS state (with days left when a certificate is served).
    pub tls: BTreeMap<String, String>,
    /// host → the CA (directory URL) this run's order for it went to.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub ca: BTreeMap<String, String>,
    /// host → the CA's unpause URL, for each host the CA paused (no order until it is lifted).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub paused: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub secrets_generated: Vec<String>,
    /// Secrets restored from the stack's escrow in this run (names only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub secrets_restored: Vec<String>,
    /// The escrow after this run: `in_sync`, `pending`, `off` (absent when the run did not look).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub escrow: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// unit → `on`, `waiting`, `invalid` or `off` for each optional service the release ships.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub optional_services: BTreeMap<String, String>,
    /// unit → the required input files it waits for (not a failure: it starts once they exist).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub waiting: BTreeMap<String, Vec<String>>,
    /// amazon-ssm-agent's state (systemd runs only): CI deploys through SSM need it active.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssm_agent: Option<String>,
    /// The release `current` points at.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,
    /// Services that passed the health gate (systemd runs only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthy: Option<usize>,
    /// unit → why it failed the health gate.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub unhealthy: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What started the run when it was not an operator (`drift`, `renewal`, `config`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trigger: Option<String>,
    /// Files a drift check put back after a hand edit.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub corrective: Vec<String>,
}

pub(crate) fn identity_summary(p: &Prepared) -> IdentitySummary {
    let id = &p.settings.identity;
    let (stack, slot) = match id.stack {
        Stack::Prod => ("prod", None),
        Stack::Test { slot } => ("test", Some(slot)),
        Stack::Base => ("base", None),
    };
    IdentitySummary { stack, slot, zone: id.zone.clone(), issuer: id.issuer() }
}

/// Summarise a prepared run; `applied` is false for a dry run.
pub fn summary(p: &Prepared, applied: bool, error: Option<String>) -> Summary {
    let managed = p.desired.dirs.len() + p.desired.files.len() + p.desired.links.len() + p.desired.absent.len();
    let changed = p.plan.actions.iter().filter(|a| !a.is_service_effect()).count();
    let restarts = p
        .plan
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::Restart { unit, reasons } | Action::Start { unit, reasons } => {
                Some((unit.clone(), reasons.iter().map(|r| short_reason(r)).collect()))
            }
            _ => None,
        })
        .collect();
    let restored = &p.facts.secrets.restored;
    let mut secrets_generated: Vec<String> =
        p.facts.secrets.generated.iter().filter(|g| !restored.contains(g)).cloned().collect();
    let master = crate::decide::secrets::MASTER_SECRET_KEY;
    if p.facts.secrets.new_master.is_some() && !restored.iter().any(|r| r == master) {
        secrets_generated.insert(0, master.into());
    }
    let mut notes = p.settings.notes.clone();
    if p.adopted {
        notes.push("adopted a host set up by the old tooling: its identity was read from the broker unit".into());
    }
    Summary {
        result: RunResult::of(error.is_some(), applied, p.plan.is_empty(), false),
        identity: identity_summary(p),
        changed,
        unchanged: managed.saturating_sub(changed),
        failed: usize::from(error.is_some()),
        parked: 0,
        restarts,
        tls: p.facts.tls.iter().map(|(h, s)| (h.clone(), s.name().to_owned())).collect(),
        paused: BTreeMap::new(),
        ca: BTreeMap::new(),
        secrets_generated,
        secrets_restored: restored.clone(),
        escrow: None,
        notes,
        optional_services: p
            .settings
            .presence
            .iter()
            .filter(|(_, pr)| **pr != Presence::NotShipped)
            .map(|(u, pr)| ((*u).to_owned(), pr.name().to_owned()))
            .collect(),
        waiting: p
            .settings
            .presence
            .iter()
            .filter_map(|(u, pr)| match pr {
                Presence::Waiting { missing } => Some(((*u).to_owned(), missing.clone())),
                _ => None,
            })
            .collect(),
        healthy: None,
        unhealthy: BTreeMap::new(),
        ssm_agent: p.observed.runtime.as_ref().map(|r| r.ssm_agent.clone()),
        release: None,
        error: error.as_deref().map(crate::decide::run::summary_error),
        trigger: None,
        corrective: Vec::new(),
    }
}

/// The certificate step's per-host results in the summary: parked, CA, paused, TLS with days left.
pub(crate) fn add_certificates(
    summary: &mut Summary,
    outcomes: &BTreeMap<String, crate::host::tls::HostOutcome>,
    now: i64,
) {
    use crate::decide::acme_policy::CertState;
    summary.parked = outcomes.values().filter(|o| o.state == CertState::DnsNotReady).count();
    summary.ca = outcomes.iter().filter_map(|(h, o)| o.ca.clone().map(|c| (h.clone(), c))).collect();
    summary.paused = outcomes
        .iter()
        .filter_map(|(h, o)| crate::host::acme::unpause_url_in(&o.detail).map(|u| (h.clone(), u)))
        .collect();
    summary.tls = outcomes
        .iter()
        .map(|(h, o)| {
            (h.clone(), o.days_left(now).map_or_else(|| o.state.to_string(), |d| format!("{} {d}d", o.state)))
        })
        .collect();
}

/// A reason without directories (`/etc/agentkeys/worker-email.env changed` → `worker-email.env
/// changed`), so the one-line summary stays small; the full report keeps the paths.
fn short_reason(reason: &str) -> String {
    match reason.split_once(' ') {
        Some((path, rest)) if path.starts_with('/') => {
            format!("{} {rest}", path.rsplit('/').next().unwrap_or(path))
        }
        _ => reason.replace(" (consumes its session public key)", ""),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reasons_are_shortened() {
        assert_eq!(super::short_reason("/etc/agentkeys/worker-email.env changed"), "worker-email.env changed");
        assert_eq!(
            super::short_reason("restarts with agentkeys-broker (consumes its session public key)"),
            "restarts with agentkeys-broker"
        );
        assert_eq!(super::short_reason("binary agentkeys-bundler changed"), "binary agentkeys-bundler changed");
    }
}
