//! What `status`, `doctor` and `escrow status` show of the escrow, gathered: whether it is on,
//! the secret's name, hostd's record (a version and a digest, never a value), the names the host
//! holds, and — when asked — the comparison with the escrow itself (one AWS read).

use serde::Serialize;

use crate::decide::escrow::{self, Found, Record};
use crate::decide::settings;
use crate::host::escrow::{Escrow, items_on_disk};
use crate::host::fs::Root;
use crate::run::prepare;

#[derive(Debug, Serialize)]
pub(crate) struct EscrowView {
    pub(crate) enabled: bool,
    /// `None`: no identity deployed yet.
    pub(crate) secret: Option<String>,
    pub(crate) record: Option<Record>,
    /// Names of the escrowed values the host holds (never the values).
    pub(crate) host_names: Vec<String>,
    /// The host still holds exactly what was last verified.
    pub(crate) host_matches_record: bool,
    /// One line on the state as recorded.
    pub(crate) state: String,
    /// The comparison with the escrow, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) remote: Option<RemoteView>,
}

#[derive(Debug, Serialize)]
pub(crate) struct RemoteView {
    /// `in_sync`, `lacks`, `conflict`, `foreign`, `unreadable` or `unreachable`.
    pub(crate) verdict: &'static str,
    pub(crate) detail: String,
}

/// Gather the view of the host at `root`; `ask` also reads the escrow.
pub(crate) fn gather(rt: &tokio::runtime::Runtime, root: &Root, now: i64, ask: bool) -> anyhow::Result<EscrowView> {
    let req = prepare::Request::default();
    let inputs = prepare::read_inputs(root, &req)?;
    let saved = crate::host::state::read(root)?;
    let local = items_on_disk(root)?;
    let resolved = inputs.deployed.as_ref().map(|d| {
        settings::resolve(d.identity.clone(), &req.flags, &inputs.config, None, Some(d))
            .map(|s| (settings::escrow_on(&inputs.config, root.is_real_root()), s.region))
    });
    let (enabled, region) = match resolved {
        Some(r) => {
            let (on, region) = r?;
            (on, Some(region))
        }
        None => (settings::escrow_on(&inputs.config, root.is_real_root()), None),
    };
    let id = inputs.deployed.as_ref().map(|d| d.identity.clone());
    let record = saved.escrow;
    let state = if enabled {
        escrow::describe(record.as_ref(), &local, now)
    } else {
        "OFF ([escrow] enabled = false): a lost host loses its master secret, KEKs and keypairs".into()
    };
    let remote = match (&id, region, enabled && ask) {
        (Some(id), Some(region), true) => Some(rt.block_on(async {
            let e = Escrow::connect(id, &region).await;
            match e.read().await {
                Err(err) => RemoteView { verdict: "unreachable", detail: format!("{err:#}") },
                Ok(read) => match escrow::check(&e.secret, id, &local, &read) {
                    Found::InSync { version } => RemoteView {
                        verdict: "in_sync",
                        detail: format!("{} version {version} holds the host's {} values", e.secret, local.0.len()),
                    },
                    Found::Lacks { names } => RemoteView {
                        verdict: "lacks",
                        detail: format!("{} lacks {names:?}: the next reconcile escrows them", e.secret),
                    },
                    Found::Refused(r) => RemoteView {
                        verdict: match r {
                            escrow::EscrowRefusal::Conflict { .. } => "conflict",
                            escrow::EscrowRefusal::Foreign { .. } => "foreign",
                            escrow::EscrowRefusal::Unreadable { .. } => "unreadable",
                        },
                        detail: r.to_string(),
                    },
                },
            }
        })),
        _ => None,
    };
    Ok(EscrowView {
        enabled,
        secret: id.map(|i| i.escrow_secret()),
        host_matches_record: record.as_ref().is_some_and(|r| r.digest == local.digest()),
        record,
        host_names: local.names(),
        state,
        remote,
    })
}

/// `doctor`'s escrow check.
pub(crate) fn doctor_check(v: &EscrowView) -> crate::decide::doctor::Check {
    use crate::decide::doctor::{Check, Verdict};
    if !v.enabled {
        return Check::new("escrow", Verdict::Warn, v.state.clone());
    }
    match &v.remote {
        None => Check::new("escrow", Verdict::Warn, "no identity deployed yet: nothing to escrow"),
        Some(r) => {
            let verdict = match r.verdict {
                "in_sync" => Verdict::Pass,
                "lacks" | "unreachable" => Verdict::Warn,
                _ => Verdict::Fail,
            };
            Check::new("escrow", verdict, r.detail.clone())
        }
    }
}
