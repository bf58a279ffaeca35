//! Plain data about the host as it is: entries at the paths hostd manages, and accounts.

use std::collections::BTreeMap;

/// What exists at one path (never following a final symlink).
#[derive(Clone, PartialEq, Eq)]
pub enum Entry {
    Missing,
    File {
        content: Vec<u8>,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    Dir {
        mode: u32,
        uid: u32,
        gid: u32,
    },
    Symlink {
        target: String,
    },
    /// A socket, device or fifo: never touched.
    Other,
}

impl std::fmt::Debug for Entry {
    // File contents may be secrets: never print them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Entry::Missing => f.write_str("Missing"),
            Entry::File { content, mode, uid, gid } => {
                write!(f, "File({} bytes, {mode:04o}, {uid}:{gid})", content.len())
            }
            Entry::Dir { mode, uid, gid } => write!(f, "Dir({mode:04o}, {uid}:{gid})"),
            Entry::Symlink { target } => write!(f, "Symlink({target})"),
            Entry::Other => f.write_str("Other"),
        }
    }
}

/// The host's accounts, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accounts {
    /// user → (uid, primary gid)
    pub users: BTreeMap<String, (u32, u32)>,
    /// group → gid
    pub groups: BTreeMap<String, u32>,
}

impl Accounts {
    /// uid of `name`; root is always 0, even in a fake root without an `etc/passwd`.
    pub fn uid(&self, name: &str) -> Option<u32> {
        if name == "root" { Some(0) } else { self.users.get(name).map(|u| u.0) }
    }

    pub fn gid(&self, name: &str) -> Option<u32> {
        if name == "root" { Some(0) } else { self.groups.get(name).copied() }
    }
}

/// What systemd and the state file say about one managed service.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceFacts {
    pub active: bool,
    pub enabled: bool,
    /// SHA-256 of the binary now on disk (None when missing).
    pub binary_sha256: Option<String>,
    /// SHA-256 of the binary at the last converge, from the state file.
    pub previous_sha256: Option<String>,
}

/// Facts needed only when hostd drives systemd.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Runtime {
    /// unit (without `.service`) → facts.
    pub services: BTreeMap<String, ServiceFacts>,
    /// Units an interrupted run meant to restart (the state file's pending marker).
    pub pending_restarts: Vec<String>,
    /// Broker keypairs missing on disk: (purpose, path).
    pub missing_keypairs: Vec<(String, String)>,
    /// nginx.service is active.
    pub nginx_active: bool,
    /// amazon-ssm-agent's ActiveState (CI deploys need it), or `not installed`.
    pub ssm_agent: String,
    /// Optional services no longer enabled here whose unit still runs (to be stopped).
    pub retired_running: Vec<String>,
}

/// Everything observed that the planner compares against.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    pub entries: BTreeMap<String, Entry>,
    pub accounts: Accounts,
    /// `None` with `--no-systemd`.
    pub runtime: Option<Runtime>,
}

impl Observed {
    pub fn entry(&self, path: &str) -> &Entry {
        self.entries.get(path).unwrap_or(&Entry::Missing)
    }
}
