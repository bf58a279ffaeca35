//! `agentkeys-hostd status`: the identity, every managed service's state, the last run's result,
//! and an unfinished run if there is one.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use clap::Args;
use serde::Serialize;

use super::emit;
use crate::host::fs::Root;
use crate::host::state::{self, LastRun, Pending};
use crate::host::systemd::{Systemd, UnitState};
use crate::{decide::identity, host::observe};

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Filesystem root to read instead of /.
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: std::path::PathBuf,
    /// Print JSON (one line).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct IdentityView {
    issuer: String,
    stack: String,
    zone: String,
    record: String,
}

#[derive(Debug, Serialize)]
struct Status {
    identity: Option<IdentityView>,
    last_run: Option<LastRun>,
    pending: Option<Pending>,
    /// unit → state; empty when systemd is not reachable (`systemd` says why).
    services: BTreeMap<String, UnitState>,
    systemd: String,
    /// host → certificate in service (not-after, serial, where it lives).
    certificates: BTreeMap<String, CertView>,
    /// host → failed orders and the next allowed attempt.
    acme_ledger: BTreeMap<String, crate::decide::acme_policy::Ledger>,
    /// Per host: renewal time and why (ARI window or lifetime rule), with its ledger.
    renewals: Vec<crate::host::tls::HostSchedule>,
    /// The running daemon's record (triggers, failures by class, next wake); `None`: not running.
    daemon: Option<crate::decide::daemon::record::DaemonRecord>,
}

#[derive(Debug, Serialize)]
struct CertView {
    state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    not_after: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    serial: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<String>,
}

pub fn run(args: &StatusArgs, env: &super::Env) -> anyhow::Result<i32> {
    let root = Root::new(&args.root);
    let deployed = identity::deployed(&observe::host_records(&root)?)?;
    let saved = state::read(&root)?;
    let mut services = BTreeMap::new();
    let systemd = if root.is_real_root() {
        match env.rt.block_on(async {
            let sd = Systemd::connect().await?;
            let mut out = BTreeMap::new();
            for svc in crate::run::prepare::services_on(&root) {
                let unit = format!("{}.service", svc.unit);
                out.insert(unit.clone(), sd.unit_state(&unit).await?);
            }
            anyhow::Ok(out)
        }) {
            Ok(s) => {
                services = s;
                "connected".to_owned()
            }
            Err(e) => format!("unreachable: {e:#}"),
        }
    } else {
        "not queried (--root)".to_owned()
    };
    let certificates = deployed
        .as_ref()
        .map(|d| {
            observe::tls_states(&root, &d.identity, crate::run::prepare::services_on(&root))
                .into_iter()
                .map(|(host, s)| {
                    let (path, info) = match &s {
                        crate::decide::render::TlsState::Https { cert, .. } => {
                            (Some(cert.clone()), crate::host::certs::read_leaf(&root.path(cert)).ok())
                        }
                        crate::decide::render::TlsState::HttpPlaceholder => (None, None),
                    };
                    let view = CertView {
                        state: s.name(),
                        not_after: info.as_ref().map(|i| i.not_after),
                        serial: info.map(|i| i.serial),
                        path,
                    };
                    (host, view)
                })
                .collect()
        })
        .unwrap_or_default();
    let acme_ledger = crate::host::acme_store::AcmeStore::load(&root)?.ledger;
    let renewals = match &deployed {
        Some(d) => crate::host::tls::schedule(
            &root,
            &observe::tls_states(&root, &d.identity, crate::run::prepare::services_on(&root)),
            env.clock.now_unix(),
        )?,
        None => Vec::new(),
    };
    let status = Status {
        identity: deployed.map(|d| IdentityView {
            issuer: d.identity.issuer(),
            stack: d.identity.stack.to_string(),
            zone: d.identity.zone.clone(),
            record: d.record,
        }),
        last_run: saved.last_run,
        pending: saved.pending,
        services,
        systemd,
        certificates,
        acme_ledger,
        renewals,
        daemon: crate::daemon::read_record(&root),
    };
    if args.json {
        emit(&(serde_json::to_string(&status)? + "\n"))?;
        return Ok(crate::decide::error::exit::OK);
    }
    let mut t = String::new();
    match &status.identity {
        Some(i) => writeln!(t, "identity: {} in zone {} (issuer {}, from {})", i.stack, i.zone, i.issuer, i.record)?,
        None => writeln!(t, "identity: none deployed yet")?,
    }
    match &status.last_run {
        // No-op runs write nothing, so this is the last run that changed something or failed.
        Some(r) => {
            writeln!(t, "last change: {} ({} ms, finished at unix {})", r.result, r.duration_ms, r.finished_unix)?
        }
        None => writeln!(t, "last change: never")?,
    }
    if let Some(p) = &status.pending {
        writeln!(t, "unfinished run (pid {}): will restart {}", p.pid, p.restarts.join(", "))?;
    }
    writeln!(t, "systemd: {}", status.systemd)?;
    for (unit, s) in &status.services {
        writeln!(t, "  {unit:<36} {}/{} pid {} ({})", s.active_state, s.sub_state, s.main_pid, s.unit_file_state)?;
    }
    for (host, c) in &status.certificates {
        let until = c.not_after.map(|t| format!(", not after unix {t}")).unwrap_or_default();
        writeln!(t, "  {host:<36} {}{until}", c.state)?;
    }
    for r in &status.renewals {
        if let (Some(at), Some(why)) = (r.renew_at, &r.renew_why) {
            writeln!(t, "  {:<36} renewal at unix {at} ({why})", r.host)?;
        }
    }
    match &status.daemon {
        Some(d) => {
            let runs: u64 = d.reconciles.values().sum();
            writeln!(t, "daemon: pid {}, {runs} reconcile(s), {} correction(s)", d.pid, d.corrections)?;
            if let Some(w) = &d.next_wake {
                writeln!(t, "  next: {} at unix {} ({})", w.trigger, w.at, w.why)?;
            }
            if let Some(n) = &d.note {
                writeln!(t, "  note: {n}")?;
            }
        }
        None => writeln!(t, "daemon: not running")?,
    }
    for (host, l) in &status.acme_ledger {
        writeln!(
            t,
            "  {host:<36} {} failed order(s), last {}; next attempt at unix {}",
            l.failures, l.last_error_class, l.next_attempt
        )?;
    }
    emit(&t)?;
    Ok(crate::decide::error::exit::OK)
}
