//! A fake system manager for the in-process tests of the executor, the run and the daemon: unit
//! states, jobs that end `done` or `failed` the way systemd reports them, enablement, a rule for
//! which starts fail, and a hook that plays a service's side effects at start (the broker writing
//! its public key). It stands in for systemd and the services only; everything else is real.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use anyhow::bail;

use super::{Job, Manager, UnitState};
use crate::decide::catalog::Service;
use crate::host::health::Verdict;

type Rule = Box<dyn Fn(Job, &str) -> bool>;
type Hook = Box<dyn Fn(&str)>;

/// The fake manager. Units never seen are `inactive`/`dead`, not installed.
#[allow(missing_debug_implementations)] // holds closures
#[derive(Default)]
pub(crate) struct FakeManager {
    units: RefCell<BTreeMap<String, UnitState>>,
    /// Every call in order: `daemon-reload`, `enable a b`, `Start x`, `Restart y`, …
    log: RefCell<Vec<String>>,
    fails: RefCell<Option<Rule>>,
    on_start: RefCell<Vec<Hook>>,
    /// Units that run but answer their health probe wrongly.
    unhealthy: RefCell<BTreeSet<String>>,
}

impl FakeManager {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts and restarts for which `rule(job, unit)` holds end `failed` (exit status 1).
    pub(crate) fn fail_when(&self, rule: impl Fn(Job, &str) -> bool + 'static) {
        *self.fails.borrow_mut() = Some(Box::new(rule));
    }

    /// Also run `hook(unit)` whenever a start or restart of a unit succeeds.
    pub(crate) fn on_start(&self, hook: impl Fn(&str) + 'static) {
        self.on_start.borrow_mut().push(Box::new(hook));
    }

    /// `unit` keeps running but fails its health probe.
    pub(crate) fn set_unhealthy(&self, unit: &str, bad: bool) {
        let mut set = self.unhealthy.borrow_mut();
        if bad {
            set.insert(unit.to_owned());
        } else {
            set.remove(unit);
        }
    }

    /// The calls made so far, and forget them.
    pub(crate) fn take_log(&self) -> Vec<String> {
        std::mem::take(&mut self.log.borrow_mut())
    }

    /// The health gate as the fake's services answer it: active and not marked unhealthy.
    pub fn gate(&self, services: &[&Service]) -> Vec<Verdict> {
        services
            .iter()
            .map(|s| {
                let unit = format!("{}.service", s.unit);
                let state = self.units.borrow().get(&unit).cloned().unwrap_or_default();
                let ok = state.is_active() && !self.unhealthy.borrow().contains(&unit);
                let detail =
                    if ok { "fake: ok".to_owned() } else { format!("fake: {} (HTTP 503)", state.active_state) };
                Verdict { unit, ok, detail }
            })
            .collect()
    }

    fn unknown(_unit: &str) -> UnitState {
        UnitState { active_state: "inactive".into(), sub_state: "dead".into(), ..UnitState::default() }
    }

    fn with_unit<T>(&self, unit: &str, f: impl FnOnce(&mut UnitState) -> T) -> T {
        let mut units = self.units.borrow_mut();
        f(units.entry(unit.to_owned()).or_insert_with(|| Self::unknown(unit)))
    }
}

impl Manager for FakeManager {
    async fn system_state(&self) -> anyhow::Result<String> {
        Ok("running".into())
    }

    async fn daemon_reload(&self) -> anyhow::Result<()> {
        self.log.borrow_mut().push("daemon-reload".into());
        Ok(())
    }

    async fn enable(&self, units: &[String]) -> anyhow::Result<bool> {
        let mut changed = false;
        for u in units {
            changed |= self.with_unit(u, |s| {
                let was = s.unit_file_state == "enabled";
                s.unit_file_state = "enabled".into();
                !was
            });
        }
        self.log.borrow_mut().push(format!("enable {}", units.join(" ")));
        Ok(changed)
    }

    async fn run_job(&self, job: Job, unit: &str) -> anyhow::Result<()> {
        self.log.borrow_mut().push(format!("{job:?} {unit}"));
        let fails = self.fails.borrow().as_ref().is_some_and(|rule| rule(job, unit));
        let result = self.with_unit(unit, |s| match job {
            Job::Start | Job::Restart if fails => {
                *s = UnitState {
                    active_state: "failed".into(),
                    sub_state: "failed".into(),
                    result: "exit-code".into(),
                    exec_main_status: 1,
                    ..s.clone()
                };
                "failed"
            }
            Job::Start | Job::Restart => {
                s.active_state = "active".into();
                s.sub_state = "running".into();
                s.result = "success".into();
                s.exec_main_status = 0;
                s.main_pid += 1;
                "done"
            }
            Job::Reload if !s.is_active() => "failed",
            Job::Reload => "done",
            Job::Stop => {
                s.active_state = "inactive".into();
                s.sub_state = "dead".into();
                "done"
            }
        });
        if result != "done" {
            bail!("{job:?} of {unit} ended with result \"{result}\"");
        }
        if matches!(job, Job::Start | Job::Restart) {
            for hook in self.on_start.borrow().iter() {
                hook(unit);
            }
        }
        Ok(())
    }

    async fn unit_state(&self, unit: &str) -> anyhow::Result<UnitState> {
        Ok(self.units.borrow().get(unit).cloned().unwrap_or_else(|| Self::unknown(unit)))
    }
}
