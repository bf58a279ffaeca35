//! Desired host content: every unit, env file, vhost, directory and link, rendered in memory from
//! `units/` and `templates/` before anything is written (spec §§3–6).

mod login;
mod nginx;
mod services;
mod templates;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::decide::paths;
use crate::decide::secrets::Secrets;
use crate::decide::settings::Settings;

pub(crate) use login::LoginFacts;
pub(crate) use nginx::{Layout, TlsState, tls_state};
pub use templates::Engine as TemplateEngine;

/// What must happen when a file changes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(tag = "kind", content = "unit", rename_all = "snake_case")]
pub enum Trigger {
    /// A unit file: daemon-reload, then restart this unit.
    UnitFile(String),
    /// An input of a running service: restart it.
    Restart(String),
    /// nginx configuration: validate and reload nginx.
    ReloadNginx,
    /// sshd configuration: reload sshd.
    ReloadSshd,
}

/// What a file is, for the report and for modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    Unit,
    EnvFile,
    Secret,
    Vhost,
    State,
    Login,
}

/// A check a candidate file must pass before it goes live; on failure the previous file stays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Validator {
    /// `visudo -c -f <candidate>`.
    Visudo,
    /// `sshd -t` with the candidate in place (the old content restored on failure).
    Sshd,
}

/// A file with its exact bytes, mode and owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSpec {
    pub path: String,
    pub content: String,
    pub mode: u32,
    pub owner: &'static str,
    pub group: &'static str,
    pub kind: FileKind,
    pub triggers: Vec<Trigger>,
    pub validate: Option<Validator>,
}

/// A directory; `exact` directories get their mode and owner enforced, others only exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirSpec {
    pub path: String,
    pub mode: u32,
    pub owner: &'static str,
    pub group: &'static str,
    pub exact: bool,
}

/// A symlink `path → target`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkSpec {
    pub path: String,
    pub target: String,
    pub triggers: Vec<Trigger>,
}

/// A path that must not exist (the distro's default site).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AbsentSpec {
    pub path: String,
    pub reason: String,
    pub triggers: Vec<Trigger>,
}

/// Facts about the host the rendering depends on (observed before rendering).
#[derive(Debug, Clone)]
pub struct HostFacts {
    pub secrets: Secrets,
    pub tls: BTreeMap<String, TlsState>,
    /// nginx, systemd and EC2 facts as detected (with the configuration's HTTP/2 override applied).
    pub platform: crate::decide::platform::Platform,
    pub login: LoginFacts,
    /// Operator template overrides: (template name, file, text).
    pub template_overrides: Vec<(String, String, String)>,
    /// How the operator inputs of each running service that takes some reach it.
    pub inputs: BTreeMap<&'static str, crate::decide::inputs::Handover>,
}

/// The whole desired state of the host's files.
#[derive(Debug, Clone, Default)]
pub struct DesiredHost {
    pub dirs: Vec<DirSpec>,
    pub files: Vec<FileSpec>,
    pub links: Vec<LinkSpec>,
    pub absent: Vec<AbsentSpec>,
}

const ROOT: &str = "root";

fn dir(path: &str, mode: u32, owner: &'static str, group: &'static str) -> DirSpec {
    DirSpec { path: path.into(), mode, owner, group, exact: true }
}

fn parent_only(path: &str) -> DirSpec {
    DirSpec { path: path.into(), mode: 0o755, owner: ROOT, group: ROOT, exact: false }
}

/// Render everything. Pure: same inputs, same bytes.
pub fn render(settings: &Settings, facts: &HostFacts) -> anyhow::Result<DesiredHost> {
    let engine = templates::Engine::new(&facts.template_overrides)?;
    let mut host = DesiredHost {
        dirs: vec![
            parent_only("/etc/systemd/system"),
            dir(paths::ETC_AGENTKEYS, 0o750, ROOT, paths::SERVICE_USER),
            dir(paths::SERVICE_HOME, 0o700, paths::SERVICE_USER, paths::SERVICE_USER),
            dir(paths::DOT_AGENTKEYS, 0o700, paths::SERVICE_USER, paths::SERVICE_USER),
            dir(paths::BROKER_KEY_DIR, 0o700, paths::SERVICE_USER, paths::SERVICE_USER),
            dir(paths::AUDIT_LEAVES, 0o750, paths::SERVICE_USER, paths::SERVICE_USER),
            dir(paths::STATE_DIR, 0o755, ROOT, ROOT),
            dir(paths::ACME_WEBROOT, 0o755, ROOT, ROOT),
            dir(&format!("{}/.well-known", paths::ACME_WEBROOT), 0o755, ROOT, ROOT),
            dir(&format!("{}/.well-known/acme-challenge", paths::ACME_WEBROOT), 0o755, ROOT, ROOT),
        ],
        ..DesiredHost::default()
    };
    services::render(&engine, settings, facts, &mut host)?;
    login::render(&facts.login, &mut host);
    nginx::render(&engine, settings, facts, &mut host)?;
    host.files.push(FileSpec {
        path: paths::IDENTITY_RECORD.into(),
        content: serde_json::to_string_pretty(&crate::decide::identity::Record {
            issuer: settings.identity.issuer(),
            account_id: settings.account_id.clone(),
        })? + "\n",
        mode: 0o644,
        owner: ROOT,
        group: ROOT,
        kind: FileKind::State,
        triggers: vec![],
        validate: None,
    });
    Ok(host)
}
