//! nginx, one way everywhere: one acceptance rule for `nginx -t` and one reload-or-start, used by
//! the file step (which restores the previous files on a rejection), the executor and `doctor`.

use anyhow::Context;

use super::fs::Root;
use super::systemd::{Job, Manager};
use crate::decide::nginx_reload as reload;

const UNIT: &str = "nginx.service";

/// The acceptance rule: `nginx -t` must succeed with no `[emerg]` and no `[warn]` (nginx passes
/// some broken configurations with only a warning). `Err` carries what nginx said.
pub(crate) fn judge(success: bool, stderr: &str) -> Result<(), String> {
    let said = stderr.trim();
    if success && !said.contains("[warn]") && !said.contains("[emerg]") {
        Ok(())
    } else {
        Err(if said.is_empty() { "nginx -t failed without a message".into() } else { said.to_owned() })
    }
}

/// Why the configuration on disk is not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejected {
    /// nginx cannot be run at all.
    NotInstalled(String),
    /// `nginx -t` refused it or warned; what nginx said.
    Config(String),
}

impl std::fmt::Display for Rejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rejected::NotInstalled(e) => write!(f, "nginx cannot be run ({e}): apt-get install nginx"),
            Rejected::Config(said) => write!(f, "nginx -t rejected the configuration: {said}"),
        }
    }
}

/// `nginx -t` on the configuration now on disk, judged by [`judge`].
pub fn test() -> Result<(), Rejected> {
    let out = super::system_command("nginx").arg("-t").output().map_err(|e| Rejected::NotInstalled(e.to_string()))?;
    judge(out.status.success(), &String::from_utf8_lossy(&out.stderr)).map_err(Rejected::Config)
}

/// Test, then reload nginx when it runs, or start it when it does not. Under another root the
/// test is left out, as in the file step: `nginx -t` reads this machine's `/etc/nginx`.
/// A reload returns only once it has taken effect (see [`settle`]): what follows — an ACME order
/// validated through nginx, the proof that a certificate is served — reaches new workers only.
pub(crate) async fn reload_or_start(sd: &impl Manager, root: &Root) -> anyhow::Result<()> {
    if root.is_real_root() {
        test().map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let state = sd.unit_state(UNIT).await?;
    if !state.is_active() {
        // A fresh master reads the configuration before it listens: nothing old can answer.
        return sd.run_job(Job::Start, UNIT).await.context("failed to start nginx");
    }
    let master = state.main_pid;
    let watch = root.is_real_root() && master != 0;
    let before = if watch { reload::serving(&children(master)?) } else { Vec::new() };
    sd.run_job(Job::Reload, UNIT).await.context("failed to reload nginx")?;
    if watch {
        let took = settle(master, &before, reload::SETTLE_BUDGET).await?;
        tracing::info!(took_ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX), "nginx reload took effect");
    }
    Ok(())
}

/// The children of the nginx master `master`, each with what its title says it is.
fn children(master: u32) -> anyhow::Result<Vec<(u32, reload::Child)>> {
    let list = format!("/proc/{master}/task/{master}/children");
    let text = std::fs::read_to_string(&list)
        .with_context(|| format!("nginx's master process {master} is gone ({list}): see journalctl -u nginx"))?;
    Ok(text
        .split_whitespace()
        .filter_map(|p| p.parse::<u32>().ok())
        .map(|pid| {
            let title = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let title: String = String::from_utf8_lossy(&title).replace('\0', " ");
            (pid, reload::child_kind(&title))
        })
        .collect())
}

/// Wait until the reload has taken effect: every worker that accepts connections was started by
/// the reloaded master. Bounded by `budget`; the error names nginx and the workers still serving
/// from before. No fixed sleep: the master's children are looked at every few milliseconds.
async fn settle(master: u32, before: &[u32], budget: std::time::Duration) -> anyhow::Result<std::time::Duration> {
    let began = std::time::Instant::now();
    // Seen settled on two looks in a row: a worker retitles itself "is shutting down" a moment
    // before it closes its listening sockets.
    let mut seen = false;
    loop {
        let now = children(master)?;
        if reload::settled(before, &now) {
            if seen {
                return Ok(began.elapsed());
            }
            seen = true;
        } else {
            seen = false;
        }
        if began.elapsed() >= budget {
            anyhow::bail!(
                "nginx did not take its new configuration within {} s: workers from before the reload still \
                 accept connections (pids {:?}); see journalctl -u nginx and nginx's error log",
                budget.as_secs(),
                reload::stale(before, &now)
            );
        }
        tokio::time::sleep(reload::SETTLE_POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_warning_fails_like_an_error() {
        assert!(judge(true, "nginx: the configuration file /etc/nginx/nginx.conf syntax is ok").is_ok());
        let warn = "nginx: [warn] conflicting server name \"a\" on 0.0.0.0:80, ignored";
        assert_eq!(judge(true, warn), Err(warn.to_owned()));
        assert!(judge(true, "nginx: [emerg] unknown directive").is_err());
        assert!(judge(false, "").is_err_and(|e| e.contains("without a message")));
    }
}
