//! nginx, one way everywhere: one acceptance rule for `nginx -t` and one reload-or-start, used by
//! the file step (which restores the previous files on a rejection), the executor and `doctor`.

use anyhow::Context;

use super::fs::Root;
use super::systemd::{Job, Manager};

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
pub(crate) async fn reload_or_start(sd: &impl Manager, root: &Root) -> anyhow::Result<()> {
    if root.is_real_root() {
        test().map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let job = if sd.unit_state(UNIT).await?.is_active() { Job::Reload } else { Job::Start };
    sd.run_job(job, UNIT).await.context("failed to reload nginx")
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
