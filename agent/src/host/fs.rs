//! Filesystem access relative to a root (`/` in production, a directory in tests and offline
//! rendering), with atomic writes: temp file in the same directory, mode and owner set, fsync,
//! rename, fsync the directory (spec §4).

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, bail};

use crate::decide::observed::Entry;

/// A filesystem root. Every path given to it is absolute as seen from inside the root.
#[derive(Debug, Clone)]
pub struct Root {
    base: PathBuf,
}

impl Root {
    pub fn new(base: impl Into<PathBuf>) -> Self {
        Self { base: base.into() }
    }

    pub(crate) fn is_real_root(&self) -> bool {
        self.base == Path::new("/")
    }

    pub fn base(&self) -> &Path {
        &self.base
    }

    /// The host path of `abs` (an absolute path inside the root).
    pub fn path(&self, abs: &str) -> PathBuf {
        self.base.join(abs.trim_start_matches('/'))
    }

    /// Refuse to follow a symlinked parent directory: under a fake root it could point out of it.
    fn check_parents(&self, abs: &str) -> anyhow::Result<()> {
        if self.is_real_root() {
            return Ok(());
        }
        let mut cur = self.base.clone();
        let rel = Path::new(abs.trim_start_matches('/'));
        let parent = rel.parent().unwrap_or(Path::new(""));
        for comp in parent.components() {
            match comp {
                Component::Normal(c) => cur.push(c),
                _ => bail!("refusing path {abs}: only plain components are allowed"),
            }
            if fs::symlink_metadata(&cur).is_ok_and(|m| m.file_type().is_symlink()) {
                bail!(
                    "refusing to write {abs}: {} is a symlink and could lead outside the root {}",
                    cur.display(),
                    self.base.display()
                );
            }
        }
        Ok(())
    }

    pub fn read(&self, abs: &str) -> anyhow::Result<Option<Vec<u8>>> {
        match fs::read(self.path(abs)) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("failed to read {}", self.path(abs).display())),
        }
    }

    pub(crate) fn read_string(&self, abs: &str) -> anyhow::Result<Option<String>> {
        self.read(abs)?
            .map(|b| String::from_utf8(b).with_context(|| format!("{} is not UTF-8", self.path(abs).display())))
            .transpose()
    }

    pub fn is_dir(&self, abs: &str) -> bool {
        self.path(abs).is_dir()
    }

    /// Names in a directory (empty if it does not exist), sorted.
    pub fn list(&self, abs: &str) -> anyhow::Result<Vec<String>> {
        let dir = self.path(abs);
        let iter = match fs::read_dir(&dir) {
            Ok(i) => i,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("failed to list {}", dir.display())),
        };
        let mut names = Vec::new();
        for e in iter {
            let e = e.with_context(|| format!("failed to list {}", dir.display()))?;
            names.push(e.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }

    /// What is at `abs`, without following a final symlink.
    pub fn entry(&self, abs: &str) -> anyhow::Result<Entry> {
        let p = self.path(abs);
        let meta = match fs::symlink_metadata(&p) {
            Ok(m) => m,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Entry::Missing),
            Err(e) => return Err(e).with_context(|| format!("failed to inspect {}", p.display())),
        };
        let ft = meta.file_type();
        Ok(if ft.is_symlink() {
            let target = fs::read_link(&p).with_context(|| format!("failed to read link {}", p.display()))?;
            Entry::Symlink { target: target.to_string_lossy().into_owned() }
        } else if ft.is_dir() {
            Entry::Dir { mode: meta.mode() & 0o7777, uid: meta.uid(), gid: meta.gid() }
        } else if ft.is_file() {
            let content = fs::read(&p).with_context(|| format!("failed to read {}", p.display()))?;
            Entry::File { content, mode: meta.mode() & 0o7777, uid: meta.uid(), gid: meta.gid() }
        } else {
            Entry::Other
        })
    }

    /// Write `content` atomically with `mode` and owner; the old file (if any) stays intact until the
    /// rename, and nobody can read the temp file before its mode is set.
    pub(crate) fn write_atomic(&self, abs: &str, content: &[u8], mode: u32, uid: u32, gid: u32) -> anyhow::Result<()> {
        self.check_parents(abs)?;
        let dest = self.path(abs);
        let dir = dest.parent().with_context(|| format!("{} has no parent", dest.display()))?;
        let name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp = dir.join(format!(".{name}.hostd-tmp-{}", std::process::id()));
        remove_stale_temps(dir, &name);
        let result = (|| -> anyhow::Result<()> {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
                .with_context(|| format!("failed to create {}", tmp.display()))?;
            std::os::unix::fs::fchown(&f, Some(uid), Some(gid))
                .with_context(|| format!("failed to chown {}", tmp.display()))?;
            f.set_permissions(fs::Permissions::from_mode(mode))
                .with_context(|| format!("failed to chmod {}", tmp.display()))?;
            f.write_all(content).with_context(|| format!("failed to write {}", tmp.display()))?;
            f.sync_all().with_context(|| format!("failed to fsync {}", tmp.display()))?;
            crate::host::failpoints::hit("write-temp");
            fs::rename(&tmp, &dest)
                .with_context(|| format!("failed to rename {} to {}", tmp.display(), dest.display()))?;
            crate::host::failpoints::hit("write-renamed");
            sync_dir(dir)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// Fix mode and owner in place (content already right).
    pub(crate) fn set_meta(&self, abs: &str, mode: u32, uid: u32, gid: u32) -> anyhow::Result<()> {
        self.check_parents(abs)?;
        let p = self.path(abs);
        std::os::unix::fs::lchown(&p, Some(uid), Some(gid))
            .with_context(|| format!("failed to chown {}", p.display()))?;
        fs::set_permissions(&p, fs::Permissions::from_mode(mode))
            .with_context(|| format!("failed to chmod {}", p.display()))
    }

    /// Create a directory (parents must exist) with mode and owner.
    pub(crate) fn mkdir(&self, abs: &str, mode: u32, uid: u32, gid: u32) -> anyhow::Result<()> {
        self.check_parents(abs)?;
        let p = self.path(abs);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).with_context(|| format!("failed to create {}", parent.display()))?;
        }
        match fs::create_dir(&p) {
            // Created meanwhile (e.g. the state directory by the pending marker): fix its meta.
            Err(e) if e.kind() == ErrorKind::AlreadyExists && p.is_dir() => {}
            other => other.with_context(|| format!("failed to create directory {}", p.display()))?,
        }
        self.set_meta(abs, mode, uid, gid)?;
        sync_dir(p.parent().unwrap_or(Path::new("/")))
    }

    /// Point `abs` at `target`, replacing any previous link atomically.
    pub(crate) fn symlink_atomic(&self, abs: &str, target: &str) -> anyhow::Result<()> {
        self.check_parents(abs)?;
        let dest = self.path(abs);
        let dir = dest.parent().with_context(|| format!("{} has no parent", dest.display()))?;
        let tmp = dir.join(format!(
            ".{}.hostd-tmp-{}",
            dest.file_name().unwrap_or_default().to_string_lossy(),
            std::process::id()
        ));
        remove_stale_temps(dir, &dest.file_name().unwrap_or_default().to_string_lossy());
        let _ = fs::remove_file(&tmp);
        std::os::unix::fs::symlink(target, &tmp).with_context(|| format!("failed to create link {}", tmp.display()))?;
        crate::host::failpoints::hit("link-temp");
        fs::rename(&tmp, &dest).with_context(|| format!("failed to rename {} to {}", tmp.display(), dest.display()))?;
        sync_dir(dir)
    }

    /// Rename within the root (same directory: atomic), then fsync the directory.
    pub fn rename(&self, from: &str, to: &str) -> anyhow::Result<()> {
        self.check_parents(to)?;
        let (a, b) = (self.path(from), self.path(to));
        fs::rename(&a, &b).with_context(|| format!("failed to rename {} to {}", a.display(), b.display()))?;
        sync_dir(b.parent().unwrap_or(Path::new("/")))
    }

    /// Remove a file or link (never a directory tree).
    pub fn remove(&self, abs: &str) -> anyhow::Result<()> {
        self.check_parents(abs)?;
        let p = self.path(abs);
        match fs::remove_file(&p) {
            Ok(()) => sync_dir(p.parent().unwrap_or(Path::new("/"))),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("failed to remove {}", p.display())),
        }
    }

    /// Move whatever is at `abs` aside to `abs.hostd-replaced-<pid>` so a new entry can take its place.
    pub(crate) fn move_aside(&self, abs: &str) -> anyhow::Result<PathBuf> {
        let p = self.path(abs);
        let aside = PathBuf::from(format!("{}.hostd-replaced-{}", p.display(), std::process::id()));
        fs::rename(&p, &aside).with_context(|| format!("failed to move {} aside", p.display()))?;
        Ok(aside)
    }
}

fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).with_context(|| format!("failed to fsync directory {}", dir.display()))
}

/// Temp files of `name` left by a run that died between writing and renaming (runs are
/// serialised by the lock, so any such file is an orphan): removed before writing `name` again.
fn remove_stale_temps(dir: &Path, name: &str) {
    let prefix = format!(".{name}.hostd-tmp-");
    let Ok(entries) = fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = fs::remove_file(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_sets_mode_owner_and_leaves_no_temp() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = Root::new(dir.path());
        fs::create_dir_all(root.path("/etc/agentkeys")).expect("mkdir");
        root.write_atomic("/etc/agentkeys/x.env", b"A=1\n", 0o600, 0, 0).expect("write");
        root.write_atomic("/etc/agentkeys/x.env", b"A=2\n", 0o640, 0, 0).expect("rewrite");
        match root.entry("/etc/agentkeys/x.env").expect("entry") {
            Entry::File { content, mode, .. } => {
                assert_eq!((content.as_slice(), mode), (&b"A=2\n"[..], 0o640))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(root.list("/etc/agentkeys").expect("list"), ["x.env"]);
    }

    #[test]
    fn refuses_symlinked_parents_in_a_fake_root() {
        let dir = tempfile::tempdir().expect("tempdir");
        let outside = tempfile::tempdir().expect("tempdir");
        std::os::unix::fs::symlink(outside.path(), dir.path().join("etc")).expect("link");
        let root = Root::new(dir.path());
        let err = root.write_atomic("/etc/x", b"x", 0o644, 0, 0).expect_err("refused");
        assert!(err.to_string().contains("is a symlink"), "{err}");
        assert!(!outside.path().join("x").exists());
    }
}
