//! Run a plan on a root, in order, stopping at the first failure; return what was done.

use anyhow::Context;

use crate::host::accounts::AccountDb;
use crate::host::fs::Root;
use crate::observed::Entry;
use crate::plan::{Action, Change, Plan};

/// What happened to each action.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Display lines of the actions carried out.
    pub done: Vec<String>,
    /// Actions left to other capabilities (systemd, nginx) in this run.
    pub skipped: Vec<String>,
}

fn ids(accounts: &dyn AccountDb, owner: &str, group: &str) -> anyhow::Result<(u32, u32)> {
    let acc = accounts.lookup(&[owner], &[group])?;
    let uid = acc.uid(owner).with_context(|| format!("user {owner} does not exist"))?;
    let gid = acc.gid(group).with_context(|| format!("group {group} does not exist"))?;
    Ok((uid, gid))
}

/// Execute the file and account actions of `plan`. Service effects are returned as skipped: the
/// systemd executor (`execute`) runs them.
pub fn apply(root: &Root, accounts: &dyn AccountDb, plan: &Plan) -> anyhow::Result<Outcome> {
    let mut out = Outcome::default();
    for action in &plan.actions {
        let line = action.to_string();
        match action {
            Action::CreateGroup { name } => accounts.create_group(name)?,
            Action::CreateUser { name, home, shell } => accounts.create_user(name, home, shell)?,
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
    Ok(out)
}
