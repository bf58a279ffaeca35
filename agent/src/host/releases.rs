//! Release bundles on disk: load a bundle (a directory, `.tar.gz` or `.tar.zst`) and verify every
//! file against its manifest before anything changes; stage it under
//! `/opt/agentkeys/releases/<id>/`; switch the one `current` symlink atomically; adopt the old
//! script's `/usr/local/bin` binaries as release `adopted`; clean old releases.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use sha2::Digest;

use crate::decide::error::{InvalidInput, Source};
use crate::decide::release::{self, MANIFEST, Manifest, SIGNATURE, Trust};
use crate::host::fs::Root;

pub(crate) const RELEASES: &str = "/opt/agentkeys/releases";
pub(crate) const CURRENT: &str = "/opt/agentkeys/current";
pub use crate::decide::paths::BIN_DIR;
/// Largest binary or archive member accepted.
const MAX_FILE: u64 = 512 << 20;

/// A verified bundle, still outside the release directory.
#[derive(Debug)]
pub struct Loaded {
    pub manifest: Manifest,
    /// name → bytes of every binary.
    pub binaries: BTreeMap<String, Vec<u8>>,
}

fn refuse(src: &str, reason: impl Into<String>) -> anyhow::Error {
    InvalidInput::new(Source::Flag(format!("--release {src}")), reason).into()
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// A bundle read into memory: the manifest's text, its signature if any, `bin/<name>` → bytes.
type Read3 = (String, Option<String>, BTreeMap<String, Vec<u8>>);

/// Read the files of a bundle archive into memory.
fn read_archive(src: &str, mut archive: tar::Archive<impl Read>) -> anyhow::Result<Read3> {
    let mut manifest = None;
    let mut signature = None;
    let mut bins = BTreeMap::new();
    for entry in archive.entries().map_err(|e| refuse(src, format!("not a tar archive: {e}")))? {
        let mut entry = entry.map_err(|e| refuse(src, format!("truncated or corrupt archive: {e}")))?;
        let path =
            entry.path().map_err(|e| refuse(src, format!("bad member name: {e}")))?.to_string_lossy().into_owned();
        if !release::safe_member(&path) {
            return Err(refuse(src, format!("member {path:?} would land outside the release directory")));
        }
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            continue;
        }
        if !kind.is_file() {
            return Err(refuse(src, format!("member {path:?} is a {kind:?}, not a plain file (links are refused)")));
        }
        if entry.size() > MAX_FILE {
            return Err(refuse(src, format!("member {path:?} is larger than {MAX_FILE} bytes")));
        }
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).map_err(|e| refuse(src, format!("truncated archive at {path:?}: {e}")))?;
        let rel = path.trim_start_matches("./");
        match rel.split_once('/') {
            None if rel == MANIFEST => {
                manifest = Some(String::from_utf8(bytes).map_err(|_| refuse(src, "manifest is not UTF-8"))?)
            }
            None if rel == SIGNATURE => {
                signature = Some(String::from_utf8(bytes).map_err(|_| refuse(src, "the signature is not UTF-8"))?)
            }
            Some(("bin", name)) if !name.contains('/') => {
                bins.insert(name.to_owned(), bytes);
            }
            _ => {
                return Err(refuse(
                    src,
                    format!("unexpected member {path:?} (only {MANIFEST}, {SIGNATURE} and bin/<binary>)"),
                ));
            }
        }
    }
    Ok((manifest.ok_or_else(|| refuse(src, format!("no {MANIFEST}")))?, signature, bins))
}

fn read_dir_bundle(src: &str, dir: &Path) -> anyhow::Result<Read3> {
    let manifest =
        std::fs::read_to_string(dir.join(MANIFEST)).map_err(|e| refuse(src, format!("no readable {MANIFEST}: {e}")))?;
    let signature = match std::fs::read_to_string(dir.join(SIGNATURE)) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(refuse(src, format!("unreadable {SIGNATURE}: {e}"))),
    };
    let mut bins = BTreeMap::new();
    for e in std::fs::read_dir(dir.join("bin")).map_err(|e| refuse(src, format!("no bin/ directory: {e}")))? {
        let e = e?;
        let meta = std::fs::symlink_metadata(e.path())?;
        let name = e.file_name().to_string_lossy().into_owned();
        if !meta.is_file() {
            return Err(refuse(src, format!("bin/{name} is not a plain file (links are refused)")));
        }
        if meta.len() > MAX_FILE {
            return Err(refuse(src, format!("bin/{name} is larger than {MAX_FILE} bytes")));
        }
        bins.insert(name, std::fs::read(e.path())?);
    }
    Ok((manifest, signature, bins))
}

/// Load and verify a bundle from `src` (directory or archive path); `sha256` must match an archive.
pub fn load(src: &str, sha256: Option<&str>, trust: &Trust, now: i64) -> anyhow::Result<Loaded> {
    let path = PathBuf::from(src);
    let (manifest_text, signature, binaries) = if path.is_dir() {
        if sha256.is_some() {
            return Err(refuse(src, "--sha256 applies to an archive or URL, not a directory"));
        }
        read_dir_bundle(src, &path)?
    } else {
        let bytes = std::fs::read(&path).map_err(|e| refuse(src, format!("cannot read: {e}")))?;
        return load_archive(src, &bytes, sha256, trust, now);
    };
    verified(&manifest_text, signature.as_deref(), binaries, trust, now)
}

/// Load and verify an archive already in memory (a local file or a download); `src` names it and
/// its suffix picks the format.
pub(crate) fn load_archive(
    src: &str,
    bytes: &[u8],
    sha256: Option<&str>,
    trust: &Trust,
    now: i64,
) -> anyhow::Result<Loaded> {
    if let Some(want) = sha256 {
        let got = sha256_hex(bytes);
        if got != want.to_ascii_lowercase() {
            return Err(refuse(src, format!("SHA-256 {got} does not match --sha256 {want} (truncated or altered)")));
        }
    }
    let name = src.split(['?', '#']).next().unwrap_or(src);
    let (manifest_text, signature, binaries) = if name.ends_with(".tar.gz") || name.ends_with(".tgz") {
        read_archive(src, tar::Archive::new(flate2::read::GzDecoder::new(bytes)))?
    } else if name.ends_with(".tar.zst") {
        let dec = zstd::stream::read::Decoder::new(bytes).map_err(|e| refuse(src, format!("not zstd: {e}")))?;
        read_archive(src, tar::Archive::new(dec))?
    } else {
        return Err(refuse(src, "a release is a directory, a .tar.gz/.tgz or a .tar.zst file, or an https:// URL"));
    };
    verified(&manifest_text, signature.as_deref(), binaries, trust, now)
}

/// Check the signature and the manifest (trust), then every binary's hash.
fn verified(
    manifest_text: &str,
    signature: Option<&str>,
    binaries: BTreeMap<String, Vec<u8>>,
    trust: &Trust,
    now: i64,
) -> anyhow::Result<Loaded> {
    let manifest = release::check_trust(manifest_text, signature, trust, now)?;
    let found: BTreeMap<String, String> = binaries.iter().map(|(n, b)| (n.clone(), sha256_hex(b))).collect();
    release::check_files(&manifest, &found)?;
    Ok(Loaded { manifest, binaries })
}

/// Stage `loaded` as `releases/<id>` (written under a temporary name, renamed when complete).
/// An existing identical release is reused; a different one with the same id is refused.
pub fn install(root: &Root, loaded: &Loaded) -> anyhow::Result<String> {
    let id = loaded.manifest.id();
    let dir = format!("{RELEASES}/{id}");
    if root.path(&dir).is_dir() {
        let same = loaded
            .binaries
            .iter()
            .all(|(n, b)| std::fs::read(root.path(&format!("{dir}/bin/{n}"))).is_ok_and(|x| x == *b));
        if same {
            return Ok(id);
        }
        bail!("{dir} exists with different binaries; a release id (version-commit) must not be reused for other bytes");
    }
    let tmp = format!("{RELEASES}/.{id}.partial-{}", std::process::id());
    // A run that died while staging left its partial copy: runs are serialised, so it is an orphan.
    for name in root.list(RELEASES)?.into_iter().filter(|n| n.starts_with('.') && n.contains(".partial-")) {
        let _ = std::fs::remove_dir_all(root.path(&format!("{RELEASES}/{name}")));
    }
    std::fs::create_dir_all(root.path(&format!("{tmp}/bin"))).with_context(|| format!("failed to create {tmp}"))?;
    for (name, bytes) in &loaded.binaries {
        root.write_atomic(&format!("{tmp}/bin/{name}"), bytes, loaded.manifest.mode_of(name), 0, 0)?;
    }
    let text = toml::to_string(&ManifestOut::from(&loaded.manifest))?;
    root.write_atomic(&format!("{tmp}/{MANIFEST}"), text.as_bytes(), 0o644, 0, 0)?;
    root.rename(&tmp, &dir)?;
    Ok(id)
}

#[derive(serde::Serialize)]
struct ManifestOut<'a> {
    version: &'a str,
    commit: &'a str,
    broker_features: &'a [String],
    binaries: &'a BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    modes: &'a BTreeMap<String, String>,
}

impl<'a> From<&'a Manifest> for ManifestOut<'a> {
    fn from(m: &'a Manifest) -> Self {
        Self {
            version: &m.version,
            commit: &m.commit,
            broker_features: &m.broker_features,
            binaries: &m.binaries,
            modes: &m.modes,
        }
    }
}

/// The release `current` points at.
pub fn current(root: &Root) -> Option<String> {
    std::fs::read_link(root.path(CURRENT)).ok().and_then(|t| t.file_name().map(|n| n.to_string_lossy().into_owned()))
}

/// Point `current` at release `id` (one atomic rename); returns the previous one.
pub fn switch(root: &Root, id: &str) -> anyhow::Result<Option<String>> {
    let previous = current(root);
    std::fs::create_dir_all(root.path("/opt/agentkeys")).context("failed to create /opt/agentkeys")?;
    root.symlink_atomic(CURRENT, &format!("releases/{id}"))?;
    Ok(previous)
}

/// A host set up by the old script: its `/usr/local/bin` binaries become release `adopted`.
pub fn adopt(root: &Root) -> anyhow::Result<Option<String>> {
    let mut binaries = BTreeMap::new();
    for name in release::known_binaries() {
        match root.read(&format!("/usr/local/bin/{name}"))? {
            Some(b) => binaries.insert(name.to_owned(), b),
            None if release::required_binaries().contains(&name) => return Ok(None),
            None => None,
        };
    }
    let manifest = Manifest {
        version: "adopted".into(),
        commit: "0000000".into(),
        broker_features: vec![release::REQUIRED_BROKER_FEATURE.into()],
        binaries: binaries.iter().map(|(n, b)| (n.clone(), sha256_hex(b))).collect(),
        created_unix: None,
        expires_unix: None,
        modes: BTreeMap::new(),
    };
    let loaded = Loaded { manifest, binaries };
    let id = install(root, &loaded)?;
    switch(root, &id)?;
    Ok(Some(id))
}

/// Remove releases other than `keep`.
pub fn clean(root: &Root, keep: &[&str]) -> anyhow::Result<Vec<String>> {
    let mut removed = Vec::new();
    for name in root.list(RELEASES)? {
        if !keep.contains(&name.as_str()) && !name.starts_with('.') {
            std::fs::remove_dir_all(root.path(&format!("{RELEASES}/{name}")))
                .with_context(|| format!("failed to remove release {name}"))?;
            removed.push(name);
        }
    }
    Ok(removed)
}

/// Release directory names, newest first (by modification time).
pub(crate) fn list_by_age(root: &Root) -> anyhow::Result<Vec<String>> {
    let mut out: Vec<(std::time::SystemTime, String)> = Vec::new();
    for name in root.list(RELEASES)? {
        if name.starts_with('.') {
            continue;
        }
        let t = std::fs::metadata(root.path(&format!("{RELEASES}/{name}")))
            .and_then(|m| m.modified())
            .unwrap_or(std::time::UNIX_EPOCH);
        out.push((t, name));
    }
    out.sort_by_key(|e| std::cmp::Reverse(e.0));
    Ok(out.into_iter().map(|(_, n)| n).collect())
}
