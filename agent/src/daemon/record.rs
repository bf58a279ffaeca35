//! What the daemon knows about itself, shared with `status --json` and the metrics endpoint:
//! written to `/run/agentkeys-hostd/daemon.json` after every change (gone when it stops).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::acme_policy::HostSchedule;

pub const DAEMON_FILE: &str = "/run/agentkeys-hostd/daemon.json";

/// The outcome of the daemon's last reconcile.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LastReconcile {
    pub trigger: String,
    /// `converged`, `changed`, `failed`, `rolled_back`, …
    pub result: String,
    pub exit_code: i32,
    pub finished_unix: i64,
    pub duration_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Files a drift check put back (hand edits corrected).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub corrective: Vec<String>,
}

/// The next planned wake-up.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NextWake {
    pub at: i64,
    pub trigger: String,
    pub why: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DaemonRecord {
    pub pid: u32,
    pub started_unix: i64,
    /// Milliseconds from process start to `READY=1`.
    pub ready_ms: u64,
    /// trigger → reconciles run.
    pub reconciles: BTreeMap<String, u64>,
    /// failure class → failed reconciles.
    pub failures: BTreeMap<String, u64>,
    /// Files corrected by drift checks since the daemon started.
    pub corrections: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<LastReconcile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_wake: Option<NextWake>,
    /// Per host: certificate, renewal time and why, failure ledger.
    #[serde(default)]
    pub hosts: Vec<HostSchedule>,
    /// Why the daemon is idle (e.g. no identity deployed yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The class a failed run is counted under in the metrics (`None` for success).
pub fn failure_class(code: i32, result: &str, summary: &serde_json::Value) -> Option<&'static str> {
    use crate::error::exit;
    let failed_tls = summary["tls"].as_object().is_some_and(|m| {
        m.values().any(|v| v.as_str().is_some_and(|s| s.starts_with("failed") || s.starts_with("self_check")))
    });
    match code {
        exit::OK => None,
        exit::INVALID => Some("invalid_input"),
        exit::CONFLICT => Some("identity_conflict"),
        exit::LOCKED => Some("lock_busy"),
        _ if result == "rolled_back" => Some("rolled_back"),
        _ if summary["unhealthy"].as_object().is_some_and(|m| !m.is_empty()) => Some("health"),
        _ if failed_tls => Some("acme"),
        _ => Some("apply"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_classed() {
        let none = serde_json::Value::Null;
        assert_eq!(failure_class(0, "changed", &none), None);
        assert_eq!(failure_class(2, "failed", &none), Some("invalid_input"));
        assert_eq!(failure_class(3, "failed", &none), Some("identity_conflict"));
        assert_eq!(failure_class(75, "failed", &none), Some("lock_busy"));
        assert_eq!(failure_class(1, "rolled_back", &none), Some("rolled_back"));
        let unhealthy = serde_json::json!({"unhealthy": {"agentkeys-broker.service": "503"}});
        assert_eq!(failure_class(1, "failed", &unhealthy), Some("health"));
        let tls = serde_json::json!({"tls": {"broker.example.org": "failed"}});
        assert_eq!(failure_class(1, "failed", &tls), Some("acme"));
        assert_eq!(failure_class(1, "failed", &none), Some("apply"));
    }
}
