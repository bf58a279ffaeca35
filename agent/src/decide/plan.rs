//! Desired + observed → an ordered plan of actions, each with its reason. An empty plan means the
//! host is converged; the executor does exactly what the plan says and nothing else.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::decide::catalog::{Pubkey, SERVICES};
use crate::decide::observed::{Entry, Observed, Runtime};
use crate::decide::paths;
use crate::decide::render::{DesiredHost, FileKind, Trigger, Validator};

/// Why a path is touched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    Create,
    /// Content differs.
    Update,
    /// Only mode/owner differ: fixed in place.
    Fix(Vec<String>),
    /// Something of another type is in the way (a file where a directory belongs, …).
    Replace(String),
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Create => f.write_str("absent"),
            Change::Update => f.write_str("content differs"),
            Change::Fix(what) => f.write_str(&what.join(", ")),
            Change::Replace(what) => write!(f, "{what} in the way"),
        }
    }
}

/// One step of the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    CreateGroup {
        name: String,
    },
    CreateUser {
        name: String,
        home: String,
        shell: String,
    },
    CreateLoginUser {
        name: String,
        home: String,
    },
    Dir {
        path: String,
        mode: u32,
        owner: String,
        group: String,
        change: Change,
    },
    File {
        path: String,
        mode: u32,
        owner: String,
        group: String,
        kind: FileKind,
        change: Change,
        #[serde(skip)]
        content: String,
        #[serde(skip)]
        validate: Option<Validator>,
    },
    Link {
        path: String,
        target: String,
        change: Change,
    },
    Remove {
        path: String,
        reason: String,
    },
    DaemonReload {
        reason: String,
    },
    Enable {
        units: Vec<String>,
    },
    MintKeypair {
        purpose: String,
        path: String,
    },
    Start {
        unit: String,
        reasons: Vec<String>,
    },
    Restart {
        unit: String,
        reasons: Vec<String>,
    },
    /// Stop an optional service that no longer runs here (its unit file is removed).
    Stop {
        unit: String,
        reason: String,
    },
    /// Wait until the broker's session public key exists and parses (no fixed sleep).
    AwaitPubkey {
        path: String,
    },
    ReloadNginx {
        reasons: Vec<String>,
    },
    ReloadSshd {
        reasons: Vec<String>,
    },
}

impl Action {
    /// Effects on systemd or nginx processes (as opposed to files and accounts).
    pub(crate) fn is_service_effect(&self) -> bool {
        !matches!(
            self,
            Action::CreateGroup { .. }
                | Action::CreateUser { .. }
                | Action::CreateLoginUser { .. }
                | Action::Dir { .. }
                | Action::File { .. }
                | Action::Link { .. }
                | Action::Remove { .. }
        )
    }

    /// The unit this action starts or restarts.
    pub(crate) fn started_unit(&self) -> Option<&str> {
        match self {
            Action::Start { unit, .. } | Action::Restart { unit, .. } => Some(unit),
            _ => None,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::CreateGroup { name } => write!(f, "create group {name}: absent"),
            Action::CreateUser { name, home, shell } => {
                write!(f, "create system user {name} (home {home}, shell {shell}): absent")
            }
            Action::Dir { path, mode, owner, group, change } => {
                write!(f, "{} directory {path} ({mode:04o} {owner}:{group}): {change}", verb(change))
            }
            Action::File { path, mode, owner, group, kind, change, .. } => {
                write!(f, "{} {} {path} ({mode:04o} {owner}:{group}): {change}", verb(change), kind_name(*kind))
            }
            Action::Link { path, target, change } => write!(f, "{} link {path} -> {target}: {change}", verb(change)),
            Action::Remove { path, reason } => write!(f, "remove {path}: {reason}"),
            Action::CreateLoginUser { name, home } => write!(f, "create login user {name} (home {home}, bash): absent"),
            Action::ReloadSshd { reasons } => write!(f, "reload sshd: {}", reasons.join("; ")),
            Action::DaemonReload { reason } => write!(f, "daemon-reload: {reason}"),
            Action::Enable { units } => write!(f, "enable {}: not enabled", units.join(", ")),
            Action::MintKeypair { purpose, path } => {
                write!(f, "mint broker {purpose} keypair {path}: absent")
            }
            Action::Start { unit, reasons } => write!(f, "start {unit}: {}", reasons.join("; ")),
            Action::AwaitPubkey { path } => {
                write!(f, "wait for the broker session public key {path}")
            }
            Action::Restart { unit, reasons } => {
                write!(f, "restart {unit}: {}", reasons.join("; "))
            }
            Action::Stop { unit, reason } => write!(f, "stop {unit}: {reason}"),
            Action::ReloadNginx { reasons } => write!(f, "reload nginx: {}", reasons.join("; ")),
        }
    }
}

fn verb(change: &Change) -> &'static str {
    match change {
        Change::Create => "create",
        Change::Update | Change::Replace(_) => "update",
        Change::Fix(_) => "fix",
    }
}

fn kind_name(kind: FileKind) -> &'static str {
    match kind {
        FileKind::Unit => "unit",
        FileKind::EnvFile => "env file",
        FileKind::Secret => "secret file",
        FileKind::Vhost => "nginx config",
        FileKind::State => "state file",
        FileKind::Login => "login file",
    }
}

/// The ordered plan.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub actions: Vec<Action>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.actions.is_empty() {
            return writeln!(f, "nothing to do: the host is converged");
        }
        for (i, a) in self.actions.iter().enumerate() {
            writeln!(f, "{:>3}. {a}", i + 1)?;
        }
        Ok(())
    }
}

/// Options that shape the plan.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// Leave systemd and nginx processes alone (`--no-systemd`).
    pub no_systemd: bool,
}

fn meta_diff(obs: (u32, u32, u32), want_mode: u32, owner: &str, group: &str, observed: &Observed) -> Vec<String> {
    let (mode, uid, gid) = obs;
    let mut out = Vec::new();
    if mode & 0o7777 != want_mode {
        out.push(format!("mode {:04o} -> {want_mode:04o}", mode & 0o7777));
    }
    if observed.accounts.uid(owner) != Some(uid) {
        out.push(format!("owner uid {uid} -> {owner}"));
    }
    if observed.accounts.gid(group) != Some(gid) {
        out.push(format!("group gid {gid} -> {group}"));
    }
    out
}

const SERVICE_SHELL: &str = "/usr/sbin/nologin";

/// Compute the plan.
pub fn plan(desired: &DesiredHost, observed: &Observed, opts: Options) -> Plan {
    let mut actions = Vec::new();
    if observed.accounts.gid(paths::SERVICE_USER).is_none() {
        actions.push(Action::CreateGroup { name: paths::SERVICE_USER.into() });
    }
    if observed.accounts.uid(paths::SERVICE_USER).is_none() {
        actions.push(Action::CreateUser {
            name: paths::SERVICE_USER.into(),
            home: paths::SERVICE_HOME.into(),
            shell: SERVICE_SHELL.into(),
        });
    }
    if observed.accounts.uid(paths::LOGIN_USER).is_none() {
        actions.push(Action::CreateLoginUser { name: paths::LOGIN_USER.into(), home: paths::LOGIN_HOME.into() });
    }
    let mut dirs: Vec<_> = desired.dirs.iter().collect();
    dirs.sort_by_key(|d| d.path.matches('/').count());
    for d in dirs {
        let change = match observed.entry(&d.path) {
            Entry::Missing => Some(Change::Create),
            Entry::Dir { mode, uid, gid } if d.exact => {
                let diff = meta_diff((*mode, *uid, *gid), d.mode, d.owner, d.group, observed);
                (!diff.is_empty()).then_some(Change::Fix(diff))
            }
            Entry::Dir { .. } => None,
            other => Some(Change::Replace(describe(other))),
        };
        if let Some(change) = change {
            actions.push(Action::Dir {
                path: d.path.clone(),
                mode: d.mode,
                owner: d.owner.into(),
                group: d.group.into(),
                change,
            });
        }
    }
    let mut triggered: Vec<(Trigger, String)> = Vec::new();
    for file in &desired.files {
        let change = match observed.entry(&file.path) {
            Entry::Missing => Some(Change::Create),
            Entry::File { content, mode, uid, gid } => {
                if content != file.content.as_bytes() {
                    Some(Change::Update)
                } else {
                    let diff = meta_diff((*mode, *uid, *gid), file.mode, file.owner, file.group, observed);
                    (!diff.is_empty()).then_some(Change::Fix(diff))
                }
            }
            other => Some(Change::Replace(describe(other))),
        };
        if let Some(change) = change {
            if !matches!(change, Change::Fix(_)) {
                let why = format!("{} {}", file.path, if change == Change::Create { "created" } else { "changed" });
                triggered.extend(file.triggers.iter().map(|t| (t.clone(), why.clone())));
            }
            actions.push(Action::File {
                path: file.path.clone(),
                mode: file.mode,
                owner: file.owner.into(),
                group: file.group.into(),
                kind: file.kind,
                change,
                content: file.content.clone(),
                validate: file.validate,
            });
        }
    }
    for link in &desired.links {
        let change = match observed.entry(&link.path) {
            Entry::Missing => Some(Change::Create),
            Entry::Symlink { target } if *target == link.target => None,
            Entry::Symlink { .. } => Some(Change::Update),
            other => Some(Change::Replace(describe(other))),
        };
        if let Some(change) = change {
            triggered.extend(link.triggers.iter().map(|t| (t.clone(), format!("{} linked", link.path))));
            actions.push(Action::Link { path: link.path.clone(), target: link.target.clone(), change });
        }
    }
    for gone in &desired.absent {
        if !matches!(observed.entry(&gone.path), Entry::Missing) {
            triggered.extend(gone.triggers.iter().map(|t| (t.clone(), format!("{} removed", gone.path))));
            actions.push(Action::Remove { path: gone.path.clone(), reason: gone.reason.clone() });
        }
    }
    if let (false, Some(runtime)) = (opts.no_systemd, &observed.runtime) {
        actions.extend(service_actions(&triggered, runtime));
    }
    Plan { actions }
}

fn describe(entry: &Entry) -> String {
    match entry {
        Entry::Missing => "nothing".into(),
        Entry::File { .. } => "a file".into(),
        Entry::Dir { .. } => "a directory".into(),
        Entry::Symlink { target } => format!("a symlink to {target}"),
        Entry::Other => "a special file".into(),
    }
}

/// daemon-reload once if any unit file changed, enable, mint missing keypairs, then starts and
/// restarts in catalog (dependency) order, each with every reason that applies; pubkey consumers
/// restart with the broker and wait for its key; then an nginx reload.
fn service_actions(triggered: &[(Trigger, String)], runtime: &Runtime) -> Vec<Action> {
    let mut out: Vec<Action> = runtime
        .retired_running
        .iter()
        .map(|u| Action::Stop {
            unit: format!("{u}.service"),
            reason: "optional service no longer enabled (not in the release, or switched off)".into(),
        })
        .collect();
    let unit_changes = triggered.iter().filter(|(t, _)| matches!(t, Trigger::UnitFile(_))).count();
    if unit_changes > 0 {
        out.push(Action::DaemonReload { reason: format!("{unit_changes} unit file(s) changed") });
    }
    // The runtime holds the services enabled on this host (the optional ones only where they run).
    let here = || SERVICES.iter().filter(|s| runtime.services.contains_key(s.unit));
    let disabled: Vec<String> = here()
        .filter(|s| !runtime.services.get(s.unit).is_some_and(|f| f.enabled))
        .map(|s| format!("{}.service", s.unit))
        .collect();
    if !disabled.is_empty() {
        out.push(Action::Enable { units: disabled });
    }
    for (purpose, path) in &runtime.missing_keypairs {
        out.push(Action::MintKeypair { purpose: purpose.clone(), path: path.clone() });
    }
    let mut reasons: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (t, why) in triggered {
        if let Trigger::UnitFile(u) | Trigger::Restart(u) = t {
            reasons.entry(u.as_str()).or_default().push(why.clone());
        }
    }
    for svc in here() {
        let facts = runtime.services.get(svc.unit).cloned().unwrap_or_default();
        if let (Some(now), Some(before)) = (&facts.binary_sha256, &facts.previous_sha256)
            && now != before
        {
            reasons.entry(svc.unit).or_default().push(format!("binary {} changed", svc.binary));
        }
        if runtime.pending_restarts.iter().any(|u| u == svc.unit) {
            reasons.entry(svc.unit).or_default().push("completing an interrupted run".into());
        }
    }
    let broker_moves = reasons.contains_key(BROKER) || !runtime.services.get(BROKER).is_some_and(|f| f.active);
    let mut awaited = false;
    for svc in here() {
        let facts = runtime.services.get(svc.unit).cloned().unwrap_or_default();
        let mut why = reasons.remove(svc.unit).unwrap_or_default();
        let consumes = matches!(svc.pubkey, Pubkey::PathArg | Pubkey::PemEnv(_));
        if consumes && broker_moves && facts.active {
            why.push(format!("restarts with {BROKER} (consumes its session public key)"));
        }
        if why.is_empty() && facts.active {
            continue;
        }
        if consumes && !awaited {
            out.push(Action::AwaitPubkey { path: paths::SESSION_PUBKEY.into() });
            awaited = true;
        }
        let unit = format!("{}.service", svc.unit);
        if facts.active {
            out.push(Action::Restart { unit, reasons: why });
        } else {
            why.push("not running".into());
            out.push(Action::Start { unit, reasons: why });
        }
    }
    let nginx: Vec<String> =
        triggered.iter().filter(|(t, _)| *t == Trigger::ReloadNginx).map(|(_, why)| why.clone()).collect();
    let sshd: Vec<String> =
        triggered.iter().filter(|(t, _)| *t == Trigger::ReloadSshd).map(|(_, why)| why.clone()).collect();
    if !sshd.is_empty() {
        out.push(Action::ReloadSshd { reasons: sshd });
    }
    // A run killed before its reload (a certificate installed, a vhost written) left this marker.
    let interrupted = runtime.pending_restarts.iter().any(|u| u == NGINX);
    if !nginx.is_empty() || !runtime.nginx_active || interrupted {
        let mut nginx = if nginx.len() > 3 {
            vec![format!("{} nginx configuration changes ({}, …)", nginx.len(), nginx[0])]
        } else {
            nginx
        };
        if !runtime.nginx_active {
            nginx.push("nginx is not running".into());
        }
        if interrupted {
            nginx.push("completing an interrupted run".into());
        }
        out.push(Action::ReloadNginx { reasons: nginx });
    }
    out
}

const BROKER: &str = "agentkeys-broker";

/// After certificates were installed: the nginx reload the plan lacks, if any. The vhosts name
/// each host's `current` link, so a renewal alone changes no nginx file.
pub(crate) fn reload_for_certificates(plan: &Plan, hosts: &[String]) -> Option<Action> {
    let reloads = plan.actions.iter().any(|a| matches!(a, Action::ReloadNginx { .. }));
    (!hosts.is_empty() && !reloads)
        .then(|| Action::ReloadNginx { reasons: vec![format!("new certificate for {}", hosts.join(", "))] })
}

/// The pending marker's name for an nginx reload a run still owes.
pub const NGINX: &str = "nginx";

/// What a plan restarts or reloads, as the pending marker names it: each started unit without
/// `.service`, and [`NGINX`] when the plan reloads nginx.
pub(crate) fn marked(plan: &Plan) -> Vec<String> {
    let mut out: Vec<String> = plan
        .actions
        .iter()
        .filter_map(|a| a.started_unit())
        .map(|u| u.trim_end_matches(".service").to_owned())
        .collect();
    if plan.actions.iter().any(|a| matches!(a, Action::ReloadNginx { .. })) {
        out.push(NGINX.to_owned());
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_renewal_reloads_nginx_once() {
        let hosts = vec!["broker.example.org".to_owned()];
        let reload = reload_for_certificates(&Plan::default(), &hosts).expect("a reload");
        assert_eq!(reload.to_string(), "reload nginx: new certificate for broker.example.org");
        let already = Plan { actions: vec![Action::ReloadNginx { reasons: vec!["vhost changed".into()] }] };
        assert_eq!(reload_for_certificates(&already, &hosts), None);
        assert_eq!(reload_for_certificates(&Plan::default(), &[]), None);
    }

    use super::*;
    use crate::decide::render::{FileSpec, Trigger};

    fn file(path: &str, content: &str, triggers: Vec<Trigger>) -> FileSpec {
        FileSpec {
            path: path.into(),
            content: content.into(),
            mode: 0o644,
            owner: "root",
            group: "root",
            kind: FileKind::Unit,
            triggers,
            validate: None,
        }
    }

    #[test]
    fn a_retired_optional_service_is_stopped_first_and_nothing_else_moves() {
        let mut rt = converged_accounts().runtime.expect("runtime");
        rt.retired_running.push("agentkeys-worker-channel".into());
        let unit_gone = (Trigger::UnitFile("agentkeys-worker-channel".into()), "unit removed".to_owned());
        let actions: Vec<String> = service_actions(&[unit_gone], &rt).iter().map(ToString::to_string).collect();
        assert_eq!(
            actions,
            [
                "stop agentkeys-worker-channel.service: optional service no longer enabled (not in the release, or switched off)",
                "daemon-reload: 1 unit file(s) changed",
            ]
        );
    }

    fn converged_accounts() -> Observed {
        let mut o = Observed::default();
        let mut rt = Runtime { nginx_active: true, ..Runtime::default() };
        // A host without the optional channel worker: its runtime holds the required services.
        for svc in SERVICES.iter().filter(|s| !s.optional) {
            rt.services.insert(
                svc.unit.into(),
                crate::decide::observed::ServiceFacts { active: true, enabled: true, ..Default::default() },
            );
        }
        o.runtime = Some(rt);
        o.accounts.users.insert("agentkeys".into(), (999, 999));
        o.accounts.groups.insert("agentkeys".into(), 999);
        o.accounts.users.insert("agentkey".into(), (1000, 1000));
        o.accounts.groups.insert("agentkey".into(), 1000);
        o
    }

    #[test]
    fn only_changed_inputs_restart_in_catalog_order_with_reasons() {
        let desired = DesiredHost {
            files: vec![
                file("/u/bundler", "b", vec![Trigger::UnitFile("agentkeys-bundler".into())]),
                file("/u/broker", "new", vec![Trigger::UnitFile("agentkeys-broker".into())]),
                file("/e/email.env", "same", vec![Trigger::Restart("agentkeys-worker-email".into())]),
                file("/e/creds.env", "x", vec![Trigger::Restart("agentkeys-worker-creds".into())]),
            ],
            ..DesiredHost::default()
        };
        let mut observed = converged_accounts();
        for (p, c) in [("/u/bundler", "b"), ("/u/broker", "old"), ("/e/email.env", "same")] {
            observed
                .entries
                .insert(p.into(), Entry::File { content: c.as_bytes().to_vec(), mode: 0o644, uid: 0, gid: 0 });
        }
        let plan = plan(&desired, &observed, Options::default());
        let names: Vec<String> = plan.actions.iter().map(ToString::to_string).collect();
        assert_eq!(
            names,
            [
                "update unit /u/broker (0644 root:root): content differs",
                "create unit /e/creds.env (0644 root:root): absent",
                "daemon-reload: 1 unit file(s) changed",
                "restart agentkeys-broker.service: /u/broker changed",
                "wait for the broker session public key /var/lib/agentkeys/.agentkeys/broker/session-keypair.pub.pem",
                "restart agentkeys-signer.service: restarts with agentkeys-broker (consumes its session public key)",
                "restart agentkeys-worker-creds.service: /e/creds.env created; restarts with agentkeys-broker (consumes its session public key)",
                "restart agentkeys-worker-memory.service: restarts with agentkeys-broker (consumes its session public key)",
                "restart agentkeys-worker-config.service: restarts with agentkeys-broker (consumes its session public key)",
                "restart agentkeys-worker-classify.service: restarts with agentkeys-broker (consumes its session public key)",
            ]
        );
        let quiet = super::plan(&desired, &observed, Options { no_systemd: true });
        assert!(quiet.actions.iter().all(|a| !a.is_service_effect()));
    }

    #[test]
    fn one_env_file_one_restart_binary_changes_and_pending_runs() {
        let desired = DesiredHost {
            files: vec![file("/e/email.env", "new", vec![Trigger::Restart("agentkeys-worker-email".into())])],
            ..DesiredHost::default()
        };
        let mut observed = converged_accounts();
        observed
            .entries
            .insert("/e/email.env".into(), Entry::File { content: b"old".to_vec(), mode: 0o644, uid: 0, gid: 0 });
        let restarts =
            |p: &Plan| p.actions.iter().filter_map(|a| a.started_unit().map(str::to_owned)).collect::<Vec<_>>();
        assert_eq!(restarts(&plan(&desired, &observed, Options::default())), ["agentkeys-worker-email.service"]);

        let rt = observed.runtime.as_mut().expect("runtime");
        let email = rt.services.get_mut("agentkeys-worker-email").expect("email");
        (email.binary_sha256, email.previous_sha256) = (Some("b".into()), Some("a".into()));
        rt.pending_restarts = vec!["agentkeys-bundler".into()];
        rt.services.get_mut("agentkeys-worker-audit").expect("audit").active = false;
        let p = plan(&desired, &observed, Options::default());
        let lines: Vec<String> =
            p.actions.iter().filter(|a| a.started_unit().is_some()).map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "start agentkeys-worker-audit.service: not running",
                "restart agentkeys-worker-email.service: /e/email.env changed; binary agentkeys-worker-email changed",
                "restart agentkeys-bundler.service: completing an interrupted run",
            ]
        );
    }

    #[test]
    fn an_owed_nginx_reload_is_completed_and_named_in_the_marker() {
        let desired = DesiredHost::default();
        let mut observed = converged_accounts();
        assert!(plan(&desired, &observed, Options::default()).is_empty(), "converged: nothing to do");
        observed.runtime.as_mut().expect("runtime").pending_restarts = vec!["nginx".into()];
        let p = plan(&desired, &observed, Options::default());
        assert_eq!(
            p.actions.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["reload nginx: completing an interrupted run"]
        );
        assert_eq!(marked(&p), ["nginx"], "the run marks what it owes");
    }

    #[test]
    fn mode_and_owner_drift_is_fixed_without_restart() {
        let desired = DesiredHost {
            files: vec![FileSpec {
                mode: 0o600,
                owner: "agentkeys",
                group: "agentkeys",
                ..file("/s", "k", vec![Trigger::Restart("agentkeys-backend".into())])
            }],
            ..DesiredHost::default()
        };
        let mut observed = converged_accounts();
        observed.entries.insert("/s".into(), Entry::File { content: b"k".to_vec(), mode: 0o644, uid: 0, gid: 999 });
        let plan = plan(&desired, &observed, Options::default());
        assert_eq!(plan.actions.len(), 1, "{plan}");
        assert_eq!(
            plan.actions[0].to_string(),
            "fix unit /s (0600 agentkeys:agentkeys): mode 0644 -> 0600, owner uid 0 -> agentkeys"
        );
    }
}
