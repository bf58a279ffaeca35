//! Run the service effects of a plan against systemd (over D-Bus) and nginx, in plan order,
//! stopping at the first failure with the unit's state and journal tail.

use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::decide::observed::Accounts;
use crate::decide::plan::{Action, Plan};
use crate::decide::pubkey::parse_public_key_pem;
use crate::decide::settings::Settings;
use crate::host::fs::Root;
use crate::host::systemd::{Job, Manager, UnitState};
use crate::{decide::paths, host::failpoints};

/// How long the broker may take to publish its session public key.
const PUBKEY_WAIT: Duration = Duration::from_secs(60);

/// The last lines the journal holds for `unit`.
pub(crate) fn journal_tail(unit: &str, lines: usize) -> String {
    crate::host::system_command("journalctl")
        .args(["-u", unit, "-n", &lines.to_string(), "--no-pager", "-o", "short-iso"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim_end().to_owned())
        .unwrap_or_else(|e| format!("(journalctl failed: {e})"))
}

/// A unit that did not come up, with everything an operator needs to see.
pub(crate) fn unit_failure(unit: &str, what: &str, state: Option<&UnitState>) -> anyhow::Error {
    let state = state.map_or_else(
        || "state unknown".to_owned(),
        |s| {
            format!(
                "ActiveState={} SubState={} Result={} ExecMainStatus={}",
                s.active_state, s.sub_state, s.result, s.exec_main_status
            )
        },
    );
    anyhow::anyhow!(
        "{unit} {what} ({state}); check its configuration and binary, then re-run reconcile.\n--- last journal lines of {unit} ---\n{}",
        journal_tail(unit, 20)
    )
}

/// How long a unit whose start failed may take to come up through its own `Restart=` policy.
const AUTO_RESTART_GRACE: Duration = Duration::from_secs(15);

/// Start or restart `unit`; `Ok(Some(note))` when it only came up after an automatic restart.
async fn start(sd: &impl Manager, job: Job, unit: &str) -> anyhow::Result<Option<String>> {
    let failed = sd.run_job(job, unit).await.err();
    let mut state = sd.unit_state(unit).await?;
    let Some(first) = failed else {
        if !matches!(state.active_state.as_str(), "active" | "reloading") {
            return Err(unit_failure(unit, "is not active after its start job", Some(&state)));
        }
        return Ok(None);
    };
    // The start failed, but systemd is restarting it by its own policy: give that a bounded chance.
    let deadline = Instant::now() + AUTO_RESTART_GRACE;
    while state.sub_state == "auto-restart" || state.active_state == "activating" {
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        state = sd.unit_state(unit).await?;
    }
    if state.is_active() {
        let note =
            format!("{unit}: first start failed ({first:#}), up after {} automatic restart(s)", state.n_restarts);
        tracing::warn!("{note}");
        return Ok(Some(note));
    }
    Err(unit_failure(unit, &format!("failed to start: {first:#}"), Some(&state)))
}

async fn await_pubkey(sd: &impl Manager, root: &Root, path: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + PUBKEY_WAIT;
    loop {
        if let Ok(text) = std::fs::read_to_string(root.path(path))
            && parse_public_key_pem(&text).is_ok()
        {
            return Ok(());
        }
        let broker = sd.unit_state("agentkeys-broker.service").await?;
        if !matches!(broker.active_state.as_str(), "active" | "activating") || Instant::now() >= deadline {
            return Err(unit_failure(
                "agentkeys-broker.service",
                &format!("did not publish a parseable session public key at {path}"),
                Some(&broker),
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn mint_keypair(settings: &Settings, accounts: &Accounts, purpose: &str, path: &str) -> anyhow::Result<()> {
    let bin = format!("{}/agentkeys-broker-server", settings.bin_dir);
    let (uid, gid) = (
        accounts.uid(paths::SERVICE_USER).context("user agentkeys is missing")?,
        accounts.gid(paths::SERVICE_USER).context("group agentkeys is missing")?,
    );
    let out = Command::new(&bin)
        .args(["keygen", "--purpose", purpose, "--out", path])
        .env_clear()
        .env("HOME", paths::SERVICE_HOME)
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .current_dir(paths::SERVICE_HOME)
        .uid(uid)
        .gid(gid)
        .output()
        .with_context(|| format!("failed to run {bin} keygen"))?;
    if !out.status.success() {
        bail!(
            "{bin} keygen --purpose {purpose} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Execute every service effect of `plan`; returns the display lines of what was done.
pub async fn run(
    sd: &impl Manager,
    root: &Root,
    settings: &Settings,
    accounts: &Accounts,
    plan: &Plan,
) -> anyhow::Result<Vec<String>> {
    let mut done = Vec::new();
    let mut notes = Vec::new();
    let mut started = 0;
    for action in plan.actions.iter().filter(|a| a.is_service_effect()) {
        match action {
            Action::DaemonReload { .. } => {
                sd.daemon_reload().await?;
                failpoints::hit("after-daemon-reload");
            }
            Action::Enable { units } => {
                sd.enable(units).await?;
            }
            Action::MintKeypair { purpose, path } => mint_keypair(settings, accounts, purpose, path)?,
            Action::Start { unit, .. } => notes.extend(start(sd, Job::Start, unit).await?),
            Action::Restart { unit, .. } => notes.extend(start(sd, Job::Restart, unit).await?),
            Action::AwaitPubkey { path } => await_pubkey(sd, root, path).await?,
            Action::Stop { unit, .. } => sd.run_job(Job::Stop, unit).await?,
            Action::ReloadNginx { .. } => {
                crate::host::nginx::reload_or_start(sd, root).await?;
            }
            Action::ReloadSshd { .. } => {
                // Debian and Ubuntu call it ssh.service; a stopped sshd reads the file when it starts.
                if sd.unit_state("ssh.service").await?.is_active() {
                    sd.run_job(Job::Reload, "ssh.service").await.context("failed to reload sshd")?;
                }
            }
            other => bail!("internal: {other} is not a service effect"),
        }
        tracing::info!(action = %action, "applied");
        done.push(action.to_string());
        if action.started_unit().is_some() {
            started += 1;
            if started == 3 {
                failpoints::hit("mid-restarts");
            }
        }
    }
    done.extend(notes.into_iter().map(|n| format!("note: {n}")));
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::systemd::fake::FakeManager;

    fn start(unit: &str) -> Action {
        Action::Start { unit: unit.into(), reasons: vec!["not running".into()] }
    }

    fn run_plan(sd: &FakeManager, actions: Vec<Action>) -> anyhow::Result<Vec<String>> {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = Root::new(dir.path());
        let settings = crate::run::testhost::settings();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(run(sd, &root, &settings, &Accounts::default(), &Plan { actions }))
    }

    #[test]
    fn jobs_run_in_plan_order() {
        let sd = FakeManager::new();
        let plan = vec![
            Action::DaemonReload { reason: "units changed".into() },
            Action::Enable { units: vec!["a.service".into(), "b.service".into()] },
            start("a.service"),
            Action::Restart { unit: "b.service".into(), reasons: vec!["env changed".into()] },
            Action::Stop { unit: "c.service".into(), reason: "switched off".into() },
        ];
        let done = run_plan(&sd, plan).expect("every job succeeds");
        assert_eq!(done.len(), 5, "{done:?}");
        assert_eq!(
            sd.take_log(),
            ["daemon-reload", "enable a.service b.service", "Start a.service", "Restart b.service", "Stop c.service"]
        );
    }

    #[test]
    fn a_failing_start_stops_the_plan_and_names_the_unit_and_its_state() {
        let sd = FakeManager::new();
        sd.fail_when(|job, unit| job == Job::Start && unit == "b.service");
        let err = run_plan(&sd, vec![start("a.service"), start("b.service"), start("c.service")])
            .expect_err("b fails to start");
        let text = format!("{err:#}");
        assert!(text.contains("b.service failed to start"), "{text}");
        assert!(text.contains("ActiveState=failed") && text.contains("Result=exit-code"), "{text}");
        assert_eq!(sd.take_log(), ["Start a.service", "Start b.service"], "nothing after the failure");
    }

    #[test]
    fn nginx_is_started_when_down_and_reloaded_when_up() {
        let sd = FakeManager::new();
        let reload = || Action::ReloadNginx { reasons: vec!["vhost changed".into()] };
        run_plan(&sd, vec![reload()]).expect("start");
        run_plan(&sd, vec![reload()]).expect("reload");
        assert_eq!(sd.take_log(), ["Start nginx.service", "Reload nginx.service"]);
    }
}
