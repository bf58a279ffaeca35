//! hostd's state record (`/var/lib/agentkeys-hostd/state.json`): the pending marker, the last
//! run, the binaries' hashes at the last good converge. Read and written by `host::state`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Units an unfinished run was about to restart.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    pub started_unix: u64,
    pub pid: u32,
    pub restarts: Vec<String>,
}

/// The outcome of the last finished run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LastRun {
    pub result: String,
    pub finished_unix: u64,
    pub duration_ms: u64,
    pub summary: serde_json::Value,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<Pending>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<LastRun>,
    /// unit → SHA-256 of its binary at the last successful converge.
    #[serde(default)]
    pub binaries: BTreeMap<String, String>,
    /// The highest release version this host has installed: an older one is a rollback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub highest_release: Option<String>,
    /// The escrow as last verified (a version and a digest, never a value), or pending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escrow: Option<crate::decide::escrow::Record>,
}
