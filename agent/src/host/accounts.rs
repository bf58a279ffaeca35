//! Users and groups: looked up and created in `etc/passwd` / `etc/group` under a fake root, or
//! through the system's databases and `useradd`/`groupadd` on `/`.

use std::process::Command;

use anyhow::{Context, bail};

use super::fs::Root;
use crate::decide::observed::Accounts;

/// First and last system id, as `useradd --system` allocates them (highest free first).
const SYSTEM_IDS: std::ops::RangeInclusive<u32> = 100..=999;

/// Account database of a host.
pub trait AccountDb: std::fmt::Debug {
    /// Look up the named users and groups.
    fn lookup(&self, users: &[&str], groups: &[&str]) -> anyhow::Result<Accounts>;
    /// Create a system group.
    fn create_group(&self, name: &str) -> anyhow::Result<()>;
    /// Create a system user whose primary group (already existing) has the same name.
    fn create_user(&self, name: &str, home: &str, shell: &str) -> anyhow::Result<()>;
    /// Create a login user with its own group and a home directory (0700).
    fn create_login_user(&self, name: &str, home: &str, shell: &str) -> anyhow::Result<()>;
}

/// First and last id of regular (login) users.
const LOGIN_IDS: std::ops::RangeInclusive<u32> = 1000..=59999;

/// Pick the database for `root`: the system's on `/`, the root's files otherwise.
pub(crate) fn for_root(root: &Root) -> Box<dyn AccountDb> {
    if root.is_real_root() { Box::new(SystemDb) } else { Box::new(FileDb { root: root.clone() }) }
}

/// `etc/passwd` and `etc/group` inside a fake root (created when absent).
#[derive(Debug)]
pub(crate) struct FileDb {
    pub root: Root,
}

fn parse_db(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| l.split(':').map(str::to_owned).collect())
        .collect()
}

impl FileDb {
    fn table(&self, file: &str) -> anyhow::Result<(String, Vec<Vec<String>>)> {
        let text = self.root.read_string(file)?.unwrap_or_default();
        let rows = parse_db(&text);
        Ok((text, rows))
    }

    fn append(&self, file: &str, line: &str, mode: u32) -> anyhow::Result<()> {
        let (mut text, _) = self.table(file)?;
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(line);
        text.push('\n');
        std::fs::create_dir_all(self.root.path("/etc")).context("failed to create etc/ in the root")?;
        self.root.write_atomic(file, text.as_bytes(), mode, 0, 0)
    }

    fn free_id(used: &[u32]) -> anyhow::Result<u32> {
        SYSTEM_IDS.rev().find(|id| !used.contains(id)).context("no free system id between 100 and 999")
    }
}

impl AccountDb for FileDb {
    fn lookup(&self, users: &[&str], groups: &[&str]) -> anyhow::Result<Accounts> {
        let mut out = Accounts::default();
        for row in self.table("/etc/passwd")?.1 {
            if let (Some(name), Some(uid), Some(gid)) = (row.first(), row.get(2), row.get(3))
                && users.contains(&name.as_str())
            {
                let parse = |v: &str| v.parse::<u32>().with_context(|| format!("etc/passwd: bad id for {name}"));
                out.users.insert(name.clone(), (parse(uid)?, parse(gid)?));
            }
        }
        for row in self.table("/etc/group")?.1 {
            if let (Some(name), Some(gid)) = (row.first(), row.get(2))
                && groups.contains(&name.as_str())
            {
                out.groups.insert(name.clone(), gid.parse().with_context(|| format!("etc/group: bad gid for {name}"))?);
            }
        }
        Ok(out)
    }

    fn create_group(&self, name: &str) -> anyhow::Result<()> {
        let used: Vec<u32> = self.table("/etc/group")?.1.iter().filter_map(|r| r.get(2)?.parse().ok()).collect();
        let gid = Self::free_id(&used)?;
        self.append("/etc/group", &format!("{name}:x:{gid}:"), 0o644)
            .with_context(|| format!("failed to create group {name}"))
    }

    fn create_user(&self, name: &str, home: &str, shell: &str) -> anyhow::Result<()> {
        let gid =
            self.lookup(&[], &[name])?.groups.get(name).copied().with_context(|| format!("group {name} is missing"))?;
        let used: Vec<u32> = self.table("/etc/passwd")?.1.iter().filter_map(|r| r.get(2)?.parse().ok()).collect();
        let uid = if used.contains(&gid) { Self::free_id(&used)? } else { gid };
        self.append("/etc/passwd", &format!("{name}:x:{uid}:{gid}:AgentKeys services:{home}:{shell}"), 0o644)
            .with_context(|| format!("failed to create user {name}"))?;
        if self.root.read("/etc/shadow")?.is_some() {
            let (mut text, _) = self.table("/etc/shadow")?;
            if !text.is_empty() && !text.ends_with('\n') {
                text.push('\n');
            }
            text.push_str(&format!("{name}:!*:::::::\n"));
            self.root.write_atomic("/etc/shadow", text.as_bytes(), 0o640, 0, 0)?;
        }
        Ok(())
    }

    fn create_login_user(&self, name: &str, home: &str, shell: &str) -> anyhow::Result<()> {
        let used_g: Vec<u32> = self.table("/etc/group")?.1.iter().filter_map(|r| r.get(2)?.parse().ok()).collect();
        let used_u: Vec<u32> = self.table("/etc/passwd")?.1.iter().filter_map(|r| r.get(2)?.parse().ok()).collect();
        let id = LOGIN_IDS
            .clone()
            .find(|id| !used_g.contains(id) && !used_u.contains(id))
            .context("no free login id between 1000 and 59999")?;
        self.append("/etc/group", &format!("{name}:x:{id}:"), 0o644)
            .with_context(|| format!("failed to create group {name}"))?;
        self.append("/etc/passwd", &format!("{name}:x:{id}:{id}:AgentKeys operator:{home}:{shell}"), 0o644)
            .with_context(|| format!("failed to create user {name}"))?;
        let dir = self.root.path(home);
        std::fs::create_dir_all(&dir).with_context(|| format!("failed to create {}", dir.display()))?;
        self.root.set_meta(home, 0o700, id, id)
    }
}

/// The running system's databases (NSS for lookups, shadow-utils for changes).
#[derive(Debug)]
pub(crate) struct SystemDb;

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let shown = format!("{cmd:?}");
    let out = cmd.output().with_context(|| format!("failed to run {shown}"))?;
    if !out.status.success() {
        bail!("{shown} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

impl AccountDb for SystemDb {
    fn lookup(&self, users: &[&str], groups: &[&str]) -> anyhow::Result<Accounts> {
        let mut out = Accounts::default();
        for name in users {
            if let Some(u) = uzers::get_user_by_name(name) {
                out.users.insert((*name).to_owned(), (u.uid(), u.primary_group_id()));
            }
        }
        for name in groups {
            if let Some(g) = uzers::get_group_by_name(name) {
                out.groups.insert((*name).to_owned(), g.gid());
            }
        }
        Ok(out)
    }

    fn create_group(&self, name: &str) -> anyhow::Result<()> {
        run(crate::host::system_command("groupadd").args(["--system", name]))
    }

    fn create_login_user(&self, name: &str, home: &str, shell: &str) -> anyhow::Result<()> {
        run(crate::host::system_command("useradd").args([
            "--create-home",
            "--user-group",
            "--home-dir",
            home,
            "--shell",
            shell,
            "--comment",
            "AgentKeys operator",
            name,
        ]))
    }

    fn create_user(&self, name: &str, home: &str, shell: &str) -> anyhow::Result<()> {
        run(crate::host::system_command("useradd").args([
            "--system",
            "--gid",
            name,
            "--home-dir",
            home,
            "--no-create-home",
            "--shell",
            shell,
            "--comment",
            "AgentKeys services",
            name,
        ]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_accounts_inside_a_fake_root() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = Root::new(dir.path());
        std::fs::create_dir_all(root.path("/etc")).expect("etc");
        std::fs::write(root.path("/etc/group"), "root:x:0:\nsystemd:x:999:\n").expect("group");
        let db = FileDb { root: root.clone() };
        assert!(db.lookup(&["agentkeys"], &["agentkeys"]).expect("lookup").users.is_empty());
        db.create_group("agentkeys").expect("group");
        db.create_user("agentkeys", "/var/lib/agentkeys", "/usr/sbin/nologin").expect("user");
        let acc = db.lookup(&["agentkeys"], &["agentkeys"]).expect("lookup");
        assert_eq!(acc.groups["agentkeys"], 998, "highest free system id");
        assert_eq!(acc.users["agentkeys"], (998, 998));
        let passwd = std::fs::read_to_string(root.path("/etc/passwd")).expect("passwd");
        assert_eq!(passwd, "agentkeys:x:998:998:AgentKeys services:/var/lib/agentkeys:/usr/sbin/nologin\n");
    }
}
