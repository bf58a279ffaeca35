//! systemd over its D-Bus API (zbus): daemon-reload, enable, start/restart with each job's
//! `JobRemoved` result awaited (the stream is opened before the call), then the unit's state.
//! `DBUS_SYSTEM_BUS_ADDRESS` selects the bus. No `systemctl` anywhere.

#[cfg(test)]
pub mod fake;

use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::StreamExt;
use serde::Serialize;
use zbus::proxy::CacheProperties;
use zbus_systemd::systemd1::{JobProxy, ManagerProxy, ServiceProxy, UnitProxy};

/// How long one job may take before we give up on it.
const JOB_TIMEOUT: Duration = Duration::from_secs(90);

/// A connection to the system manager.
#[derive(Debug, Clone)]
pub(crate) struct Systemd {
    conn: zbus::Connection,
    manager: ManagerProxy<'static>,
}

/// What systemd reports about one unit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct UnitState {
    pub active_state: String,
    pub sub_state: String,
    pub unit_file_state: String,
    pub main_pid: u32,
    pub exec_main_status: i32,
    pub result: String,
    pub n_restarts: u32,
}

impl UnitState {
    pub(crate) fn is_active(&self) -> bool {
        self.active_state == "active"
    }
}

/// The job kinds the executor issues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    Start,
    Restart,
    Reload,
    Stop,
}

/// The systemd calls a run makes — the seam between the run and the system manager: [`Systemd`]
/// over D-Bus on a host, [`fake::FakeManager`] in the in-process tests. Runs are driven on one
/// current-thread runtime, so the futures need not be `Send`.
#[allow(async_fn_in_trait)]
pub trait Manager {
    /// The manager's overall state (`running`, `degraded`, `starting`, …).
    async fn system_state(&self) -> anyhow::Result<String>;
    /// `daemon-reload`; returns when systemd has reloaded.
    async fn daemon_reload(&self) -> anyhow::Result<()>;
    /// Enable the units that are not enabled yet; true if anything changed.
    async fn enable(&self, units: &[String]) -> anyhow::Result<bool>;
    /// Run one job and wait for its end; an error names the unit and the job result.
    async fn run_job(&self, job: Job, unit: &str) -> anyhow::Result<()>;
    /// The state of `unit`, read fresh every time.
    async fn unit_state(&self, unit: &str) -> anyhow::Result<UnitState>;
}

/// A borrowed manager is a manager (the daemon lends one to each run).
impl<T: Manager> Manager for &T {
    async fn system_state(&self) -> anyhow::Result<String> {
        (**self).system_state().await
    }
    async fn daemon_reload(&self) -> anyhow::Result<()> {
        (**self).daemon_reload().await
    }
    async fn enable(&self, units: &[String]) -> anyhow::Result<bool> {
        (**self).enable(units).await
    }
    async fn run_job(&self, job: Job, unit: &str) -> anyhow::Result<()> {
        (**self).run_job(job, unit).await
    }
    async fn unit_state(&self, unit: &str) -> anyhow::Result<UnitState> {
        (**self).unit_state(unit).await
    }
}

impl Manager for Systemd {
    async fn system_state(&self) -> anyhow::Result<String> {
        Systemd::system_state(self).await
    }
    async fn daemon_reload(&self) -> anyhow::Result<()> {
        Systemd::daemon_reload(self).await
    }
    async fn enable(&self, units: &[String]) -> anyhow::Result<bool> {
        Systemd::enable(self, units).await
    }
    async fn run_job(&self, job: Job, unit: &str) -> anyhow::Result<()> {
        Systemd::run_job(self, job, unit).await
    }
    async fn unit_state(&self, unit: &str) -> anyhow::Result<UnitState> {
        Systemd::unit_state(self, unit).await
    }
}

impl Systemd {
    /// Connect to the system bus (or `DBUS_SYSTEM_BUS_ADDRESS`).
    pub async fn connect() -> anyhow::Result<Self> {
        let conn = zbus::Connection::system().await.context(
            "failed to connect to the systemd system bus (is systemd PID 1 here? DBUS_SYSTEM_BUS_ADDRESS selects another bus)",
        )?;
        let manager = ManagerProxy::new(&conn).await.context("failed to reach org.freedesktop.systemd1")?;
        manager.subscribe().await.context("failed to subscribe to systemd job signals")?;
        Ok(Self { conn, manager })
    }

    /// The manager's overall state (`running`, `degraded`, `starting`, …).
    pub(crate) async fn system_state(&self) -> anyhow::Result<String> {
        Ok(self.manager.system_state().await?)
    }

    /// `daemon-reload`; returns when systemd has reloaded.
    pub(crate) async fn daemon_reload(&self) -> anyhow::Result<()> {
        self.manager.reload().await.context("daemon-reload failed")
    }

    /// Enable the units that are not enabled yet; true if anything changed.
    pub(crate) async fn enable(&self, units: &[String]) -> anyhow::Result<bool> {
        let mut todo = Vec::new();
        for u in units {
            let state = self
                .manager
                .get_unit_file_state(u.clone())
                .await
                .with_context(|| format!("failed to read the enablement of {u}"))?;
            if state != "enabled" {
                todo.push(u.clone());
            }
        }
        if todo.is_empty() {
            return Ok(false);
        }
        let (_, changes) = self
            .manager
            .enable_unit_files(todo.clone(), false, true)
            .await
            .with_context(|| format!("failed to enable {}", todo.join(", ")))?;
        Ok(!changes.is_empty())
    }

    /// Run one job and wait for its `JobRemoved`; an error names the unit and the job result.
    pub(crate) async fn run_job(&self, job: Job, unit: &str) -> anyhow::Result<()> {
        let mut removed = self.manager.receive_job_removed().await.context("failed to listen for JobRemoved")?;
        let name = unit.to_owned();
        let mode = "replace".to_owned();
        let path = match job {
            Job::Start => self.manager.start_unit(name, mode).await,
            Job::Restart => self.manager.restart_unit(name, mode).await,
            Job::Reload => self.manager.reload_unit(name, mode).await,
            Job::Stop => self.manager.stop_unit(name, mode).await,
        }
        .with_context(|| format!("systemd refused to {job:?} {unit}"))?;
        let wait = async {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            loop {
                tokio::select! {
                    signal = removed.next() => {
                        let Some(signal) = signal else {
                            bail!("the systemd signal stream ended while waiting for {unit}");
                        };
                        let args = signal.args().context("malformed JobRemoved signal")?;
                        if args.job().as_str() == path.as_str() {
                            return Ok::<String, anyhow::Error>(args.result().clone());
                        }
                    }
                    _ = tick.tick() => {
                        // A daemon-reload (e.g. a package's postinst) can swallow the signal: a job
                        // that no longer exists has ended, and the unit's state tells how.
                        if !self.job_exists(&path).await {
                            let state = self.unit_state(unit).await?;
                            let reached = if job == Job::Stop { !state.is_active() } else { state.is_active() };
                            return Ok(if reached { "done".to_owned() } else { format!("failed ({})", state.active_state) });
                        }
                    }
                }
            }
        };
        let result = tokio::time::timeout(JOB_TIMEOUT, wait)
            .await
            .with_context(|| format!("{job:?} of {unit} did not finish within {} s", JOB_TIMEOUT.as_secs()))??;
        if result != "done" {
            bail!("{job:?} of {unit} ended with result \"{result}\"");
        }
        Ok(())
    }

    /// Does the job object at `path` still exist?
    async fn job_exists(&self, path: &zbus::OwnedObjectPath) -> bool {
        match JobProxy::builder(&self.conn).path(path.clone()).cache_properties(CacheProperties::No).build().await {
            Ok(job) => job.state().await.is_ok(),
            Err(_) => false,
        }
    }

    /// The state of `unit` (loaded on demand), read fresh every time.
    pub(crate) async fn unit_state(&self, unit: &str) -> anyhow::Result<UnitState> {
        let path = self.manager.load_unit(unit.to_owned()).await.with_context(|| format!("failed to load {unit}"))?;
        let u = UnitProxy::builder(&self.conn).path(path.clone()).cache_properties(CacheProperties::No).build().await?;
        let s = ServiceProxy::builder(&self.conn).path(path).cache_properties(CacheProperties::No).build().await?;
        Ok(UnitState {
            active_state: u.active_state().await?,
            sub_state: u.sub_state().await?,
            unit_file_state: u.unit_file_state().await.unwrap_or_default(),
            main_pid: s.main_pid().await.unwrap_or_default(),
            exec_main_status: s.exec_main_status().await.unwrap_or_default(),
            result: s.result().await.unwrap_or_default(),
            n_restarts: s.n_restarts().await.unwrap_or_default(),
        })
    }
}
