//! What the daemon knows about itself, shared with `status --json` and the metrics endpoint:
//! written to `/run/agentkeys-hostd/daemon.json` after every change (gone when it stops).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::decide::acme_policy::HostSchedule;

pub(crate) const DAEMON_FILE: &str = "/run/agentkeys-hostd/daemon.json";

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
    /// The escrow as last verified or pending (hostd's state; never a value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escrow: Option<crate::decide::escrow::Record>,
    /// Why the daemon is idle (e.g. no identity deployed yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// unit → presence of each optional service shipped here (`on`, `waiting`, `invalid`, `off`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub optional_services: BTreeMap<String, String>,
}
