//! hostd's own state: the run lock shared by every `reconcile` (and later the daemon), and the
//! state file with the pending marker written before anything is mutated.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::decide::daemon::record::{DAEMON_FILE, DaemonRecord};
use crate::host::fs::Root;

pub(crate) const STATE_FILE: &str = "/var/lib/agentkeys-hostd/state.json";
pub(crate) const LOCK_FILE: &str = "/run/agentkeys-hostd.lock";
/// The full report of the last run that changed something or failed.
pub(crate) const REPORT_FILE: &str = "/var/lib/agentkeys-hostd/last-report.json";

pub(crate) use crate::decide::error::LockBusy;

/// Held for the whole run; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct RunLock {
    _file: File,
}

/// Take the lock, waiting up to `wait`; `queued` is told once when we have to wait.
pub fn lock(root: &Root, wait: Duration, queued: impl FnOnce(&str)) -> anyhow::Result<RunLock> {
    let path = root.path(LOCK_FILE);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("failed to create {}", dir.display()))?;
    }
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("failed to open the lock {}", path.display()))?;
    let start = Instant::now();
    let mut queued = Some(queued);
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(TryLockError::WouldBlock) => {
                let holder = std::fs::read_to_string(&path).unwrap_or_default().trim().to_owned();
                if let Some(tell) = queued.take() {
                    tell(&holder);
                }
                if start.elapsed() >= wait {
                    return Err(
                        LockBusy { holder, path: path.display().to_string(), waited_secs: wait.as_secs() }.into()
                    );
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("failed to lock {}", path.display()));
            }
        }
    }
    file.set_len(0)?;
    write!(file, "{}", std::process::id())?;
    Ok(RunLock { _file: file })
}

pub use crate::decide::state::{LastRun, Pending, State};

pub fn read(root: &Root) -> anyhow::Result<State> {
    match root.read_string(STATE_FILE)? {
        None => Ok(State::default()),
        Some(text) => serde_json::from_str(&text).with_context(|| {
            format!("{STATE_FILE} is unreadable; move it aside to start afresh (services will be checked and started as needed)")
        }),
    }
}

pub fn write(root: &Root, state: &State) -> anyhow::Result<()> {
    std::fs::create_dir_all(root.path(crate::decide::paths::STATE_DIR))
        .context("failed to create the state directory")?;
    let text = serde_json::to_string_pretty(state)? + "\n";
    // Bookkeeping only, but nobody else needs it: 0600 like the run report.
    root.write_atomic(STATE_FILE, text.as_bytes(), 0o600, 0, 0)
}

/// The record of a running daemon, if there is one.
pub(crate) fn read_record(root: &Root) -> Option<DaemonRecord> {
    let text = root.read_string(DAEMON_FILE).ok()??;
    serde_json::from_str(&text).ok()
}

pub(crate) fn write_record(root: &Root, record: &DaemonRecord) -> anyhow::Result<()> {
    let dir = root.path("/run/agentkeys-hostd");
    std::fs::create_dir_all(&dir).map_err(|e| anyhow::anyhow!("failed to create {}: {e}", dir.display()))?;
    root.write_atomic(DAEMON_FILE, (serde_json::to_string_pretty(record)? + "\n").as_bytes(), 0o644, 0, 0)
}
