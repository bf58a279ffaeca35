//! `agentkeys-hostd daemon`: READY after the first observe, then reconcile on renewal times, on
//! the drift interval, on configuration changes (debounced) and on `SIGHUP`; every run is an
//! ordinary `reconcile` under the same lock, so an SSM-triggered run and the daemon never interleave.

use std::path::PathBuf;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::decide::catalog::Service;
use crate::decide::daemon::{options, record, schedule};
use crate::host::accounts;
use crate::host::clock::Clock;
use crate::host::fs::Root;
use crate::host::health::Verdict;
use crate::host::metrics_server::{self, Signal};
use crate::host::sd_notify;
use crate::host::state::write_record;
use crate::host::systemd::{Manager, Systemd};
use crate::run::{self, Host, RunRequest};
use crate::{decide::config, decide::identity, decide::paths, host::observe, run::prepare};
use options::DaemonOptions;
use record::{DaemonRecord, LastReconcile, NextWake};
use schedule::Trigger;

/// How the daemon was started.
#[derive(Debug, Clone)]
pub struct Options {
    pub root: PathBuf,
    pub no_systemd: bool,
    pub no_acme: bool,
}

/// What wakes the main loop besides its timers.
#[derive(Debug)]
enum Event {
    Signal(Signal),
    ConfigChanged,
    /// Certificates, the ledger or the identity changed (an SSM `reconcile`, or our own run).
    StateChanged,
}

/// What the events since the last wake ask the loop to do.
#[derive(Debug, Default)]
struct Asked {
    reconcile: Option<Trigger>,
    /// Reconcile for a configuration change once no write came for the debounce time.
    debounce_until: Option<i64>,
    observe: bool,
    stop: bool,
}

impl Asked {
    /// Note one event (at `now_ms`); the loop acts on what was asked after a burst is drained.
    fn take(&mut self, event: Event, debounce: Duration, now_ms: i64) {
        match event {
            Event::Signal(Signal::Reload) => self.reconcile = Some(Trigger::Reload),
            Event::Signal(Signal::Stop) => self.stop = true,
            Event::ConfigChanged => {
                self.debounce_until = Some(now_ms + i64::try_from(debounce.as_millis()).unwrap_or(1000));
            }
            Event::StateChanged => self.observe = true,
        }
    }
}

/// When another run holds the lock, try again after this long.
const LOCK_RETRY: Duration = Duration::from_secs(30);

fn random_unit() -> f64 {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        return 0.5;
    }
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

/// The daemon's settings from the configuration on disk (defaults when it cannot be read: the
/// reconcile it triggers reports the configuration error itself).
fn read_options(root: &Root) -> DaemonOptions {
    let parsed = observe::config_files(root)
        .and_then(|files| Ok(config::load(&files)?))
        .and_then(|c| Ok(options::from_config(&c)?));
    parsed.unwrap_or_else(|e| {
        tracing::warn!(error = %format!("{e:#}"), "daemon settings unreadable; using the defaults");
        options::from_config(&config::Config::default()).expect("the defaults are valid")
    })
}

/// Watch `dir` (created when missing) and send `event` for writes to paths `wanted` accepts.
fn watch(
    dir: PathBuf,
    wanted: fn(&std::path::Path) -> bool,
    tx: mpsc::Sender<Event>,
    event: fn() -> Event,
) -> anyhow::Result<notify::RecommendedWatcher> {
    use notify::Watcher as _;
    use notify::event::AccessKind;
    if !dir.exists() {
        std::fs::create_dir_all(&dir).map_err(|e| anyhow::anyhow!("failed to create {}: {e}", dir.display()))?;
    }
    let base = dir.clone();
    let mut watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
        let Ok(ev) = ev else { return };
        if matches!(ev.kind, notify::EventKind::Access(AccessKind::Open(_) | AccessKind::Read)) {
            return;
        }
        if ev.paths.iter().any(|p| p.strip_prefix(&base).is_ok_and(wanted)) {
            let _ = tx.send(event());
        }
    })?;
    watcher
        .watch(&dir, notify::RecursiveMode::Recursive)
        .map_err(|e| anyhow::anyhow!("failed to watch {}: {e}", dir.display()))?;
    Ok(watcher)
}

/// Connects to the system manager for one run.
type Connect<'a, M> = &'a dyn Fn() -> anyhow::Result<M>;

/// The daemon's state between runs, and what it runs with.
struct Daemon<'a, M: Manager> {
    opts: Options,
    root: Root,
    record: Arc<Mutex<DaemonRecord>>,
    settings: DaemonOptions,
    last_run_unix: i64,
    /// `None`: files only (`--no-systemd`, another root).
    systemd: Option<Connect<'a, M>>,
    health: &'a dyn Fn(&[&Service]) -> Vec<Verdict>,
    clock: &'a dyn Clock,
    rt: &'a tokio::runtime::Runtime,
}

impl<M: Manager> Daemon<'_, M> {
    fn update(&self, f: impl FnOnce(&mut DaemonRecord)) {
        let snapshot = {
            let mut r = self.record.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            f(&mut r);
            r.clone()
        };
        if let Err(e) = write_record(&self.root, &snapshot) {
            tracing::warn!(error = %format!("{e:#}"), "could not write the daemon record");
        }
    }

    /// Read what the schedule needs: the identity and each certificate's renewal time.
    fn observe(&self) {
        let deployed = observe::host_records(&self.root).and_then(|r| identity::deployed(&r));
        let (hosts, note) = match deployed {
            Ok(Some(d)) => {
                let tls = observe::tls_states(&self.root, &d.identity, prepare::services_on(&self.root));
                match crate::host::tls::schedule(&self.root, &tls, self.clock.now_unix()) {
                    Ok(h) => (h, None),
                    Err(e) => (Vec::new(), Some(format!("certificate schedule unreadable: {e:#}"))),
                }
            }
            Ok(None) => (Vec::new(), Some(NOT_DEPLOYED.to_owned())),
            Err(e) => (Vec::new(), Some(format!("deployed identity unreadable: {e:#}"))),
        };
        let escrow = crate::host::state::read(&self.root).ok().and_then(|s| s.escrow);
        let optional = prepare::presence_on(&self.root)
            .into_iter()
            .filter(|(s, p)| s.optional && *p != crate::decide::inputs::Presence::NotShipped)
            .map(|(s, p)| (s.unit.to_owned(), p.name().to_owned()))
            .collect();
        self.update(|r| {
            r.hosts = hosts;
            r.note = note;
            r.escrow = escrow;
            r.optional_services = optional;
        });
    }

    /// Is there anything to converge? (see `schedule::converges`)
    fn deployable(&self) -> bool {
        let req = prepare::Request::default();
        match prepare::read_inputs(&self.root, &req) {
            Ok(inputs) => schedule::converges(inputs.deployed.is_some(), inputs.config.stack.is_some()),
            // A broken configuration is reported by the reconcile itself.
            Err(_) => true,
        }
    }

    /// One run through the library, as `reconcile` with no flags runs it.
    fn run_once(&self, trigger: Trigger) -> anyhow::Result<run::RunReport> {
        let db = accounts::for_root(&self.root);
        let host = Host {
            root: &self.root,
            accounts: db.as_ref(),
            systemd: self.systemd,
            health: self.health,
            clock: self.clock,
            rt: self.rt,
        };
        let ask = RunRequest {
            request: prepare::Request::default(),
            release: None,
            dry_run: false,
            acme: !self.opts.no_acme,
            keep_releases: 1,
            lock_wait: Duration::from_secs(5),
            trigger: Some(trigger.name().to_owned()),
            unpaused: Vec::new(),
            allow_downgrade: false,
        };
        run::reconcile(&host, &ask)
    }

    fn reconcile(&mut self, trigger: Trigger) -> i32 {
        self.settings = read_options(&self.root);
        if !self.deployable() {
            self.observe();
            return 0;
        }
        let began = Instant::now();
        let (code, result, class, corrective, error) = match self.run_once(trigger) {
            Ok(report) => {
                let class = report.failure_class();
                let (code, result) = (report.exit_code(), report.result());
                let corrective = report.summary.corrective.clone();
                (code, result.to_string(), class, corrective, report.into_error())
            }
            Err(e) => {
                let code = crate::decide::error::exit_code_of(&e);
                let class = crate::decide::run::failure_class(crate::decide::run::Verdict {
                    exit_code: code,
                    result: None,
                    unhealthy: false,
                    certificate_failed: false,
                });
                (code, crate::decide::run::RunResult::Failed.to_string(), class, Vec::new(), Some(e))
            }
        };
        if let Some(e) = &error {
            tracing::error!(trigger = trigger.name(), "reconcile failed: {e:#}");
        }
        self.last_run_unix = self.clock.now_unix();
        let last = LastReconcile {
            trigger: trigger.name().to_owned(),
            result,
            exit_code: code,
            finished_unix: self.last_run_unix,
            duration_ms: u64::try_from(began.elapsed().as_millis()).unwrap_or(u64::MAX),
            error: error.map(|e| format!("{e:#}")),
            corrective,
        };
        self.update(|r| {
            *r.reconciles.entry(trigger.name().to_owned()).or_default() += 1;
            if let Some(class) = class {
                *r.failures.entry(class.as_str().to_owned()).or_default() += 1;
            }
            r.corrections += last.corrective.len() as u64;
            r.last = Some(last);
        });
        self.observe();
        code
    }
}

const NOT_DEPLOYED: &str = "no identity deployed yet: run `agentkeys-hostd reconcile` with the identity flags once (or set [identity] stack in hostd.toml); the daemon then keeps it converged";

/// Run until `SIGTERM`; returns the exit code.
pub fn run(opts: Options, started: Instant, rt: &tokio::runtime::Runtime, clock: &dyn Clock) -> anyhow::Result<i32> {
    let root = Root::new(&opts.root);
    let settings = read_options(&root);
    let record = Arc::new(Mutex::new(DaemonRecord {
        pid: std::process::id(),
        started_unix: clock.now_unix(),
        ..Default::default()
    }));
    let (tx, rx) = mpsc::channel::<Event>();
    let signals = tx.clone();
    metrics_server::start(
        rt,
        move |s| signals.send(Event::Signal(s)).is_ok(),
        record.clone(),
        settings.metrics_listen,
        !opts.no_systemd,
    )?;
    let _config =
        watch(root.path(paths::ETC_AGENTKEYS), schedule::is_config_path, tx.clone(), || Event::ConfigChanged)?;
    let _state = watch(root.path(paths::STATE_DIR), schedule::is_schedule_input, tx, || Event::StateChanged)?;
    let connect = || rt.block_on(Systemd::connect());
    let systemd = (!opts.no_systemd).then_some(&connect as Connect<'_, Systemd>);
    let mut d =
        Daemon { opts, root, record, settings, last_run_unix: 0, systemd, health: &run::health_gate, clock, rt };
    d.observe();
    let ready_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    d.update(|r| r.ready_ms = ready_ms);
    sd_notify::notify(&format!("READY=1\nSTATUS=observed; converging (ready in {ready_ms} ms)"));
    tracing::info!(ready_ms, "daemon ready");

    let watchdog = sd_notify::watchdog_interval();
    let mut asked = Asked { reconcile: Some(Trigger::Start), ..Asked::default() };
    let mut next_drift_ms = 0_i64;
    let jitter = random_unit();
    while !asked.stop {
        if let Some(trigger) = asked.reconcile.take() {
            sd_notify::notify(&format!("STATUS=reconciling ({})", trigger.name()));
            let code = d.reconcile(trigger);
            next_drift_ms = clock.now_ms() + i64::try_from(d.settings.drift_interval.as_millis()).unwrap_or(i64::MAX);
            if code == crate::decide::error::exit::LOCKED {
                // Another converge (an SSM run) holds the lock: come back soon with the same reason.
                next_drift_ms = clock.now_ms() + LOCK_RETRY.as_millis() as i64;
            }
            if trigger == Trigger::Config {
                asked.debounce_until = None;
            }
        }
        let hosts = d.record.lock().map(|r| r.hosts.clone()).unwrap_or_default();
        let renewal = schedule::renewal_wake(&hosts, d.last_run_unix, jitter, d.settings.renewal_jitter_secs)
            .map(|w| schedule::Wake { at: w.at.saturating_mul(1000), ..w });
        let wake = schedule::next_wake(next_drift_ms, renewal, asked.debounce_until);
        let shown = NextWake { at: wake.at / 1000, trigger: wake.trigger.name().to_owned(), why: wake.why.clone() };
        if d.record.lock().map(|r| r.next_wake.as_ref() != Some(&shown)).unwrap_or(true) {
            d.update(|r| r.next_wake = Some(shown));
            sd_notify::notify(&format!(
                "STATUS=idle; next: {} at unix {} ({})",
                wake.trigger.name(),
                wake.at / 1000,
                wake.why
            ));
        }
        let mut timeout = Duration::from_millis(u64::try_from((wake.at - clock.now_ms()).max(0)).unwrap_or(0));
        if let Some(w) = watchdog {
            timeout = timeout.min(w);
        }
        match rx.recv_timeout(timeout) {
            Ok(event) => {
                let burst = matches!(event, Event::StateChanged);
                asked.take(event, d.settings.debounce, clock.now_ms());
                if burst {
                    // Coalesce a burst (a run installs several certificates) before reading again.
                    std::thread::sleep(Duration::from_millis(200));
                    while let Ok(event) = rx.try_recv() {
                        asked.take(event, d.settings.debounce, clock.now_ms());
                    }
                }
            }
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => {
                if clock.now_ms() >= wake.at {
                    asked.reconcile = Some(wake.trigger);
                }
            }
        }
        if std::mem::take(&mut asked.observe) {
            d.observe();
        }
        if watchdog.is_some() {
            sd_notify::notify("WATCHDOG=1");
        }
    }
    sd_notify::notify("STOPPING=1");
    let _ = std::fs::remove_file(d.root.path(record::DAEMON_FILE));
    Ok(crate::decide::error::exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::state::read_record;

    #[test]
    fn a_burst_of_events_is_one_set_of_requests() {
        let mut asked = Asked::default();
        let before = 1_000_000;
        for event in [Event::StateChanged, Event::ConfigChanged, Event::StateChanged, Event::Signal(Signal::Reload)] {
            asked.take(event, Duration::from_millis(300), before);
        }
        assert_eq!(asked.reconcile, Some(Trigger::Reload));
        assert!(asked.observe && !asked.stop);
        assert_eq!(asked.debounce_until, Some(before + 300));
        asked.take(Event::Signal(Signal::Stop), Duration::ZERO, before);
        assert!(asked.stop, "a stop in the burst ends the loop");
    }

    #[test]
    fn each_run_is_counted_with_its_trigger_and_failures_by_class() {
        let h = run::testhost::TestHost::new();
        let a = h.release("1.0.0");
        let first = h.reconcile(&run::testhost::TestHost::ask(Some(&a))).expect("deploy");
        assert!(first.error.is_none(), "{:?}", first.error);
        let sd = &*h.sd;
        let connect = || Ok(sd);
        let gate = |s: &[&Service]| sd.gate(s);
        let opts = Options { root: h.dir.path().to_owned(), no_systemd: false, no_acme: true };
        let mut d = Daemon {
            opts,
            root: h.root.clone(),
            record: Arc::default(),
            settings: read_options(&h.root),
            last_run_unix: 0,
            systemd: Some(&connect),
            health: &gate,
            clock: &crate::host::clock::SystemClock,
            rt: &h.rt,
        };
        assert_eq!(d.reconcile(Trigger::Start), 0, "the deployed identity, no flags");

        // A hand edit: the drift check puts the unit back, counted as a correction.
        let unit = h.root.path(paths::BROKER_UNIT);
        std::fs::write(&unit, "[Service]\nExecStart=/bin/true\n").expect("edit");
        assert_eq!(d.reconcile(Trigger::Drift), 0);
        let record = read_record(&h.root).expect("the record is written");
        assert_eq!(record.corrections, 1, "{record:?}");
        let last = record.last.expect("last run");
        assert_eq!((last.trigger.as_str(), last.result.as_str()), ("drift", "changed"));
        assert!(last.corrective.iter().any(|c| c.contains("agentkeys-broker.service")), "{:?}", last.corrective);

        // An unhealthy service: the run fails and is counted as a health failure.
        sd.set_unhealthy("agentkeys-signer.service", true);
        assert_eq!(d.reconcile(Trigger::Drift), 1);
        let record = read_record(&h.root).expect("record");
        assert_eq!(record.failures.get("health"), Some(&1), "{:?}", record.failures);
        assert_eq!(record.reconciles.get("drift"), Some(&2));
        assert_eq!(record.reconciles.get("start"), Some(&1));
        let error = record.last.and_then(|l| l.error).unwrap_or_default();
        assert!(error.contains("agentkeys-signer.service failed its health check"), "{error}");

        // A start that fails (no release switch to undo): an apply failure.
        sd.set_unhealthy("agentkeys-signer.service", false);
        sd.fail_when(|_, unit| unit == "agentkeys-bundler.service");
        std::fs::write(h.root.path("/etc/systemd/system/agentkeys-bundler.service"), "[Service]\n").expect("edit");
        assert_eq!(d.reconcile(Trigger::Config), 1);
        let record = read_record(&h.root).expect("record");
        assert_eq!(record.failures.get("apply"), Some(&1), "{:?}", record.failures);
    }
}
