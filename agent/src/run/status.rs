//! What `status` shows, gathered read-only: the deployed identity, hostd's state (last run,
//! unfinished run), each managed service's unit state, the certificates in service, the ACME
//! ledger, the renewal schedule and the running daemon's record.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::decide::identity;
use crate::decide::inputs::Presence;
use crate::host::clock::Clock;
use crate::host::fs::Root;
use crate::host::observe;
use crate::host::state::{self, LastRun, Pending};
use crate::host::systemd::{Systemd, UnitState};

#[derive(Debug, Serialize)]
pub(crate) struct IdentityView {
    pub(crate) issuer: String,
    pub(crate) stack: String,
    pub(crate) zone: String,
    pub(crate) record: String,
}

#[derive(Debug, Serialize)]
pub(crate) struct Status {
    pub(crate) identity: Option<IdentityView>,
    pub(crate) last_run: Option<LastRun>,
    pub(crate) pending: Option<Pending>,
    /// unit → state; empty when systemd is not reachable (`systemd` says why).
    pub(crate) services: BTreeMap<String, UnitState>,
    pub(crate) systemd: String,
    /// host → certificate in service (not-after, serial, where it lives).
    pub(crate) certificates: BTreeMap<String, CertView>,
    /// host → failed orders and the next allowed attempt.
    pub(crate) acme_ledger: BTreeMap<String, crate::decide::acme_policy::Ledger>,
    /// Per host: renewal time and why (ARI window or lifetime rule), with its ledger.
    pub(crate) renewals: Vec<crate::host::tls::HostSchedule>,
    /// The running daemon's record (triggers, failures by class, next wake); `None`: not running.
    pub(crate) daemon: Option<crate::decide::daemon::record::DaemonRecord>,
    /// The escrow as recorded (no AWS call; `escrow status` asks the escrow itself).
    pub(crate) escrow: Option<crate::run::escrow_view::EscrowView>,
    /// nginx, systemd and the EC2 default user as detected on this host.
    pub(crate) platform: crate::decide::platform::Platform,
    /// unit → presence of each optional service (on, waiting for an input, off, not shipped).
    pub(crate) optional_services: BTreeMap<String, Presence>,
}

#[derive(Debug, Serialize)]
pub(crate) struct CertView {
    pub(crate) state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) not_after: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) not_after_rfc3339: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) serial: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) path: Option<String>,
}

/// Gather the status of the host at `root` (systemd is asked only on `/`).
pub(crate) fn gather(rt: &tokio::runtime::Runtime, clock: &dyn Clock, root: &Root) -> anyhow::Result<Status> {
    let deployed = identity::deployed(&observe::host_records(root)?)?;
    let saved = state::read(root)?;
    let presence = crate::run::prepare::presence_on(root);
    let optional_services =
        presence.iter().filter(|(s, _)| s.optional).map(|(s, p)| (s.unit.to_owned(), p.clone())).collect();
    let on = || presence.iter().filter(|(_, p)| *p == Presence::On).map(|(s, _)| *s);
    let mut services = BTreeMap::new();
    let systemd = if root.is_real_root() {
        match rt.block_on(async {
            let sd = Systemd::connect().await?;
            let mut out = BTreeMap::new();
            for svc in on() {
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
            observe::tls_states(root, &d.identity, on())
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
                        not_after_rfc3339: info.as_ref().map(|i| crate::decide::times::rfc3339(i.not_after)),
                        serial: info.map(|i| i.serial),
                        path,
                    };
                    (host, view)
                })
                .collect()
        })
        .unwrap_or_default();
    let acme_ledger = crate::host::acme_store::AcmeStore::load(root)?.ledger;
    let renewals = match &deployed {
        Some(d) => crate::host::tls::schedule(root, &observe::tls_states(root, &d.identity, on()), clock.now_unix())?,
        None => Vec::new(),
    };
    Ok(Status {
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
        daemon: state::read_record(root),
        escrow: crate::run::escrow_view::gather(rt, root, clock.now_unix(), false).ok(),
        platform: crate::host::platform::detect(root)?,
        optional_services,
    })
}
