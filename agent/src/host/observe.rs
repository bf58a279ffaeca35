//! Reading the host (never writing): configuration, identity records, existing secrets, TLS
//! material, nginx layout, and the current state of every path hostd manages.

use anyhow::Context;

use crate::decide::catalog::Service;
use crate::decide::identity::HostRecords;
use crate::decide::naming::Identity;
use crate::decide::observed::{Entry, Observed};
use crate::decide::render::{DesiredHost, TlsState, tls_state};
use crate::host::accounts::AccountDb;
use crate::host::fs::Root;
use crate::{decide::catalog, decide::paths, decide::secrets};

/// `hostd.toml` then `hostd.d/*.toml` in name order, as `(display name, text)`.
pub(crate) fn config_files(root: &Root) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    if let Some(text) = root.read_string(paths::HOSTD_CONFIG)? {
        out.push((paths::HOSTD_CONFIG.to_owned(), text));
    }
    for name in root.list(paths::HOSTD_DROPINS)? {
        if name.ends_with(".toml") && !name.starts_with('.') {
            let file = format!("{}/{name}", paths::HOSTD_DROPINS);
            let text = root.read_string(&file)?.with_context(|| format!("{file} vanished while reading"))?;
            out.push((file, text));
        }
    }
    Ok(out)
}

pub(crate) fn host_records(root: &Root) -> anyhow::Result<HostRecords> {
    Ok(HostRecords {
        broker_unit: root.read_string(paths::BROKER_UNIT)?.map(|t| (paths::BROKER_UNIT.to_owned(), t)),
        record: root.read_string(paths::IDENTITY_RECORD)?.map(|t| (paths::IDENTITY_RECORD.to_owned(), t)),
        deployed_secrets_exist: root.path(paths::DEV_KEY_SERVICE_ENV).exists(),
    })
}

/// The files that may hold one-shot secrets.
pub(crate) fn existing_secrets(root: &Root) -> anyhow::Result<secrets::Existing> {
    let mut out = secrets::Existing::default();
    let files = std::iter::once(paths::DEV_KEY_SERVICE_ENV).chain(catalog::keks().map(|k| k.file));
    for file in files {
        if let Some(text) = root.read_string(file)? {
            out.files.insert(file.to_owned(), text);
        }
    }
    Ok(out)
}

fn has_pair(root: &Root, dir: &str) -> bool {
    root.path(&format!("{dir}/fullchain.pem")).is_file() && root.path(&format!("{dir}/privkey.pem")).is_file()
}

/// The TLS state of every public host, from the certificates present.
pub fn tls_states<'a>(
    root: &Root,
    identity: &Identity,
    services: impl IntoIterator<Item = &'a Service>,
) -> std::collections::BTreeMap<String, TlsState> {
    services
        .into_iter()
        .filter_map(|s| s.vhost)
        .map(|v| v.host(identity))
        .map(|host| {
            let store = has_pair(root, &format!("{}/{host}/current", paths::TLS_STORE));
            let le = has_pair(root, &format!("{}/{host}", paths::LETSENCRYPT_LIVE));
            let state = tls_state(&host, store, le);
            (host, state)
        })
        .collect()
}

/// Operator overrides in `/etc/agentkeys/templates/<name>.tera`; an unknown name is an error.
pub(crate) fn template_overrides(root: &Root) -> anyhow::Result<Vec<(String, String, String)>> {
    let dir = "/etc/agentkeys/templates";
    let mut out = Vec::new();
    for file in root.list(dir)? {
        let Some(name) = file.strip_suffix(".tera") else { continue };
        let path = format!("{dir}/{file}");
        if !crate::decide::render::TemplateEngine::names().any(|n| n == name) {
            let known: Vec<String> =
                crate::decide::render::TemplateEngine::names().map(|n| format!("{n}.tera")).collect();
            return Err(crate::decide::error::InvalidInput::new(
                crate::decide::error::Source::Host { file: path, detail: "template override".into() },
                format!("no template is called {name}; overrides can be: {}", known.join(", ")),
            )
            .into());
        }
        let text = root.read_string(&path)?.unwrap_or_default();
        out.push((name.to_owned(), path, text));
    }
    Ok(out)
}

/// What the login-user setup depends on: sudo and OpenSSH present, and the two authorized_keys
/// (ours and the EC2 default user's, as detected).
pub(crate) fn login_facts(
    root: &Root,
    default_user: Option<&str>,
) -> anyhow::Result<crate::decide::render::LoginFacts> {
    Ok(crate::decide::render::LoginFacts {
        sudoers_d: root.is_dir(paths::SUDOERS_D),
        sshd_config: root.read_string(paths::SSHD_CONFIG)?,
        agentkey_keys: root.read_string(paths::LOGIN_AUTHORIZED_KEYS)?,
        default_user_keys: match default_user {
            Some(u) => root.read_string(&super::platform::authorized_keys_of(u))?,
            None => None,
        },
    })
}

/// The accounts hostd creates, as (users, groups) to look up.
pub(crate) const ACCOUNTS: ([&str; 2], [&str; 2]) =
    ([paths::SERVICE_USER, paths::LOGIN_USER], [paths::SERVICE_USER, paths::LOGIN_USER]);

/// Observe every path the desired state names, and the accounts.
pub fn observe(root: &Root, accounts: &dyn AccountDb, desired: &DesiredHost) -> anyhow::Result<Observed> {
    let mut observed = Observed { accounts: accounts.lookup(&ACCOUNTS.0, &ACCOUNTS.1)?, ..Observed::default() };
    let paths = desired
        .dirs
        .iter()
        .map(|d| &d.path)
        .chain(desired.files.iter().map(|f| &f.path))
        .chain(desired.links.iter().map(|l| &l.path))
        .chain(desired.absent.iter().map(|a| &a.path));
    for p in paths {
        let entry = root.entry(p)?;
        if !matches!(entry, Entry::Missing) {
            observed.entries.insert(p.clone(), entry);
        }
    }
    Ok(observed)
}
