//! Run a plan on a root, in order, stopping at the first failure; return what was done.

use anyhow::{Context, bail};

use crate::decide::observed::{Entry, Observed};
use crate::decide::plan::{Action, Change, Plan};
use crate::decide::render::Validator;
use crate::host::accounts::AccountDb;
use crate::host::fs::Root;

/// What happened to each action.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Display lines of the actions carried out.
    pub done: Vec<String>,
    /// Actions left to other capabilities (systemd, nginx) in this run.
    pub skipped: Vec<String>,
}

/// The nginx paths this plan wrote, linked or removed.
fn nginx_paths(plan: &Plan) -> Vec<&str> {
    plan.actions
        .iter()
        .filter_map(|a| match a {
            Action::File { path, .. } | Action::Link { path, .. } | Action::Remove { path, .. } => Some(path.as_str()),
            _ => None,
        })
        .filter(|p| p.starts_with("/etc/nginx/"))
        .collect()
}

/// `nginx -t` on the configuration now on disk (a `[warn]` fails too). On failure every nginx file
/// this run changed is put back as it was, so the next reload serves the previous configuration.
fn check_nginx(root: &Root, plan: &Plan, observed: &Observed) -> anyhow::Result<()> {
    let changed = nginx_paths(plan);
    if changed.is_empty() || !root.is_real_root() {
        return Ok(());
    }
    let Err(rejected) = crate::host::nginx::test() else {
        return Ok(());
    };
    for path in &changed {
        restore(root, path, observed.entry(path))
            .with_context(|| format!("failed to restore {path} after nginx -t failed"))?;
    }
    let why = match rejected {
        crate::host::nginx::Rejected::Config(said) => format!("nginx -t rejected the new configuration ({said})"),
        not_run => not_run.to_string(),
    };
    bail!("{why}; restored the previous {} and did not reload nginx", changed.join(", "))
}

fn restore(root: &Root, path: &str, entry: &Entry) -> anyhow::Result<()> {
    match entry {
        Entry::Missing => root.remove(path),
        Entry::File { content, mode, uid, gid } => root.write_atomic(path, content, *mode, *uid, *gid),
        Entry::Symlink { target } => root.symlink_atomic(path, target),
        Entry::Dir { .. } | Entry::Other => Ok(()),
    }
}

/// Put a file live only if its validator accepts it; otherwise the previous file stays.
fn validated_write(root: &Root, path: &str, content: &[u8], meta: (u32, u32, u32), v: Validator) -> anyhow::Result<()> {
    let (mode, uid, gid) = meta;
    match v {
        Validator::Visudo => {
            // sudo ignores names with a dot, so the candidate is never live before it is checked.
            let candidate = format!("{path}.hostd-candidate");
            root.write_atomic(&candidate, content, mode, uid, gid)?;
            let out =
                crate::host::system_command("visudo").args(["-c", "-q", "-f"]).arg(root.path(&candidate)).output();
            let ok = out.as_ref().is_ok_and(|o| o.status.success());
            if !ok {
                root.remove(&candidate)?;
                let why = out.map_or_else(
                    |e| format!("visudo could not run: {e}"),
                    |o| String::from_utf8_lossy(&o.stderr).trim().to_owned(),
                );
                bail!("refusing to install {path}: visudo rejected it ({why}); the previous file stays");
            }
            root.rename(&candidate, path)
        }
        Validator::Sshd => {
            let previous = root.read(path)?;
            root.write_atomic(path, content, mode, uid, gid)?;
            if !root.is_real_root() {
                return Ok(()); // sshd -t can only check the configuration of the running system
            }
            let out = crate::host::system_command("sshd").arg("-t").output();
            if out.as_ref().is_ok_and(|o| o.status.success()) {
                return Ok(());
            }
            match previous {
                Some(old) => root.write_atomic(path, &old, mode, uid, gid)?,
                None => root.remove(path)?,
            }
            let why = out.map_or_else(
                |e| format!("sshd could not run: {e}"),
                |o| String::from_utf8_lossy(&o.stderr).trim().to_owned(),
            );
            bail!("sshd -t rejected {path} ({why}); the previous configuration was restored and sshd was not reloaded")
        }
    }
}

fn ids(accounts: &dyn AccountDb, owner: &str, group: &str) -> anyhow::Result<(u32, u32)> {
    let acc = accounts.lookup(&[owner], &[group])?;
    let uid = acc.uid(owner).with_context(|| format!("user {owner} does not exist"))?;
    let gid = acc.gid(group).with_context(|| format!("group {group} does not exist"))?;
    Ok((uid, gid))
}

/// Execute the file and account actions of `plan`. Service effects are returned as skipped: the
/// systemd executor (`execute`) runs them.
pub fn apply(root: &Root, accounts: &dyn AccountDb, plan: &Plan, observed: &Observed) -> anyhow::Result<Outcome> {
    let mut out = Outcome::default();
    for action in &plan.actions {
        let line = action.to_string();
        match action {
            Action::CreateGroup { name } => accounts.create_group(name)?,
            Action::CreateUser { name, home, shell } => accounts.create_user(name, home, shell)?,
            Action::CreateLoginUser { name, home } => accounts.create_login_user(name, home, "/bin/bash")?,
            Action::Dir { path, mode, owner, group, change } => {
                let (uid, gid) = ids(accounts, owner, group)?;
                match change {
                    Change::Fix(_) => root.set_meta(path, *mode, uid, gid)?,
                    Change::Replace(_) => {
                        let aside = root.move_aside(path)?;
                        tracing::warn!(path, aside = %aside.display(), "moved a non-directory out of the way");
                        root.mkdir(path, *mode, uid, gid)?;
                    }
                    Change::Create | Change::Update => root.mkdir(path, *mode, uid, gid)?,
                }
            }
            Action::File { path, mode, owner, group, change, content, validate: Some(v), .. } => {
                let (uid, gid) = ids(accounts, owner, group)?;
                if let Change::Fix(_) = change {
                    root.set_meta(path, *mode, uid, gid)?;
                } else {
                    validated_write(root, path, content.as_bytes(), (*mode, uid, gid), *v)?;
                }
            }
            Action::File { path, mode, owner, group, change, content, .. } => {
                let (uid, gid) = ids(accounts, owner, group)?;
                match change {
                    Change::Fix(_) => root.set_meta(path, *mode, uid, gid)?,
                    Change::Replace(_) if matches!(root.entry(path)?, Entry::Dir { .. }) => {
                        let aside = root.move_aside(path)?;
                        tracing::warn!(path, aside = %aside.display(), "moved a directory out of the way");
                        root.write_atomic(path, content.as_bytes(), *mode, uid, gid)?;
                    }
                    _ => root.write_atomic(path, content.as_bytes(), *mode, uid, gid)?,
                }
            }
            Action::Link { path, target, .. } => root.symlink_atomic(path, target)?,
            Action::Remove { path, .. } => root.remove(path)?,
            _ => {
                // systemd and nginx effects: run by `execute` after the files are in place.
                out.skipped.push(line);
                continue;
            }
        }
        tracing::info!(action = %line, "applied");
        out.done.push(line);
    }
    check_nginx(root, plan, observed)?;
    Ok(out)
}
