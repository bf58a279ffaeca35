//! Release bundles (spec §8), the deciding part: the manifest, its validation, and the check of a
//! bundle's files against it. A bundle is `agentkeys-release.toml` plus `bin/<binary>` for every
//! service binary of the catalog.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::decide::error::{InvalidInput, Source};

pub const MANIFEST: &str = "agentkeys-release.toml";
/// The broker must carry this feature (the pairing-claim probe checks it at run time too).
pub(crate) const REQUIRED_BROKER_FEATURE: &str = "auth-email-link";

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub version: String,
    pub commit: String,
    pub broker_features: Vec<String>,
    /// binary name → SHA-256 (hex).
    pub binaries: BTreeMap<String, String>,
    /// When the release was built, and after when hosts refuse it (a signed release must say).
    #[serde(default)]
    pub created_unix: Option<i64>,
    #[serde(default)]
    pub expires_unix: Option<i64>,
    /// binary name → its mode, octal (`"0755"` when not listed): signed with the hashes.
    #[serde(default)]
    pub modes: BTreeMap<String, String>,
}

/// The manifest's detached minisign signature, next to it in the bundle.
pub const SIGNATURE: &str = "agentkeys-release.toml.minisig";

/// What a host trusts a release with: the pinned release keys (minisign public keys; empty: the
/// `--sha256` pin alone, as before signed releases), and the highest version it has installed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trust {
    pub keys: Vec<String>,
    pub highest: Option<String>,
    /// The operator asked for an older release on purpose (`--allow-downgrade`).
    pub allow_downgrade: bool,
}

/// Check a signed manifest before anything is staged: a signature by one of the pinned keys over
/// the manifest's exact bytes, not expired, not older than what this host has had.
pub fn check_trust(text: &str, signature: Option<&str>, trust: &Trust, now: i64) -> Result<Manifest, InvalidInput> {
    let manifest = parse_manifest(text)?;
    if !trust.keys.is_empty() {
        let sig_text = signature.ok_or_else(|| {
            bad(SIGNATURE, "the bundle is not signed, and this host pins release keys ([release] keys): sign the manifest with minisign")
        })?;
        let sig = minisign_verify::Signature::decode(sig_text)
            .map_err(|e| bad(SIGNATURE, format!("not a minisign signature: {e}")))?;
        let mut unknown = true;
        for key in &trust.keys {
            let pk = minisign_verify::PublicKey::from_base64(key)
                .map_err(|e| bad("release.keys", format!("{key:?} is not a minisign public key: {e}")))?;
            match pk.verify(text.as_bytes(), &sig, false) {
                Ok(()) => {
                    unknown = false;
                    break;
                }
                Err(minisign_verify::Error::UnexpectedKeyId) => {}
                Err(e) => {
                    return Err(bad(
                        SIGNATURE,
                        format!("the signature does not verify: {e} (the manifest was changed after signing)"),
                    ));
                }
            }
        }
        if unknown {
            return Err(bad(SIGNATURE, "signed by a key this host does not pin ([release] keys)"));
        }
        let expires =
            manifest.expires_unix.ok_or_else(|| bad("expires_unix", "a signed manifest must say when it expires"))?;
        if now >= expires {
            return Err(bad(
                "expires_unix",
                format!("the release expired at unix {expires} (a freeze): sign a fresh manifest"),
            ));
        }
    }
    if let Some(highest) = &trust.highest
        && version_cmp(&manifest.version, highest) == std::cmp::Ordering::Less
        && !trust.allow_downgrade
    {
        return Err(bad(
            "version",
            format!(
                "{} is older than {highest}, which this host has installed: a rollback (or a replayed bundle); pass --allow-downgrade if intended",
                manifest.version
            ),
        ));
    }
    Ok(manifest)
}

/// The highest version a host has had once `version` is installed, if that changes it (an
/// `adopted` or other non-numeric version never counts).
pub fn new_highest(version: &str, highest: Option<&str>) -> Option<String> {
    let numeric = version.starts_with(|c: char| c.is_ascii_digit());
    let higher = highest.is_none_or(|h| version_cmp(version, h) == std::cmp::Ordering::Greater);
    (numeric && higher).then(|| version.to_owned())
}

/// Compare versions by their numeric parts (`1.10.0` > `1.9.3`); a pre-release (`1.2.0-rc1`) sorts
/// before its release.
pub fn version_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let split = |v: &str| {
        let (main, pre) = v.split_once(['-', '+']).map_or((v, None), |(m, p)| (m, Some(p.to_owned())));
        let nums: Vec<u64> = main.split('.').map(|x| x.parse().unwrap_or(0)).collect();
        (nums, pre)
    };
    let ((na, pa), (nb, pb)) = (split(a), split(b));
    let len = na.len().max(nb.len());
    let pad = |mut v: Vec<u64>| {
        v.resize(len, 0);
        v
    };
    pad(na).cmp(&pad(nb)).then_with(|| match (pa, pb) {
        (None, None) => std::cmp::Ordering::Equal,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (Some(_), None) => std::cmp::Ordering::Less,
        (Some(x), Some(y)) => x.cmp(&y),
    })
}

fn bad(what: &str, reason: impl Into<String>) -> InvalidInput {
    InvalidInput::new(Source::Host { file: MANIFEST.into(), detail: what.into() }, reason)
}

/// Every binary a release must carry: those of the required services.
pub fn required_binaries() -> Vec<&'static str> {
    binaries(|s| !s.optional)
}

/// Every binary a release may carry: the required ones and the optional services'.
pub(crate) fn known_binaries() -> Vec<&'static str> {
    binaries(|_| true)
}

fn binaries(keep: impl Fn(&crate::decide::catalog::Service) -> bool) -> Vec<&'static str> {
    let mut b: Vec<&str> = crate::decide::catalog::SERVICES.iter().filter(|s| keep(s)).map(|s| s.binary).collect();
    b.sort_unstable();
    b.dedup();
    b
}

/// Parse and validate a manifest.
pub fn parse_manifest(text: &str) -> Result<Manifest, InvalidInput> {
    let m: Manifest = toml::from_str(text).map_err(|e| bad("manifest", e.message().to_owned()))?;
    let plain = |s: &str, max: usize| {
        !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-+".contains(&b))
    };
    if !plain(&m.version, 64) {
        return Err(bad("version", format!("{:?} is not a plain version string", m.version)));
    }
    if !(7..=64).contains(&m.commit.len()) || !m.commit.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad("commit", format!("{:?} is not a git commit id", m.commit)));
    }
    if !m.broker_features.iter().any(|f| f == REQUIRED_BROKER_FEATURE) {
        return Err(bad(
            "broker_features",
            format!(
                "the broker lacks {REQUIRED_BROKER_FEATURE}: with BROKER_AUTH_METHODS=wallet_sig,email_link it would stop at boot (BOOT_FAIL … BROKER_AUTH_METHODS); rebuild it with that feature"
            ),
        ));
    }
    for (name, hash) in &m.binaries {
        if !known_binaries().contains(&name.as_str()) {
            return Err(bad(&format!("binaries.{name}"), "not a binary of any managed service"));
        }
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(bad(&format!("binaries.{name}"), "not a lowercase hex SHA-256"));
        }
    }
    for (name, mode) in &m.modes {
        if !m.binaries.contains_key(name) {
            return Err(bad(&format!("modes.{name}"), "not a binary of this release"));
        }
        let ok = mode.len() == 4 && u32::from_str_radix(mode, 8).is_ok_and(|v| v & 0o100 != 0 && v & 0o7022 == 0);
        if !ok {
            return Err(bad(
                &format!("modes.{name}"),
                format!(
                    "{mode:?}: a binary's mode is four octal digits, executable by its owner, never set-id or writable by others"
                ),
            ));
        }
    }
    if let Some(missing) = required_binaries().into_iter().find(|b| !m.binaries.contains_key(*b)) {
        return Err(bad("binaries", format!("{missing} is missing from the manifest")));
    }
    Ok(m)
}

impl Manifest {
    /// The mode a binary is installed with.
    pub fn mode_of(&self, name: &str) -> u32 {
        self.modes.get(name).and_then(|m| u32::from_str_radix(m, 8).ok()).unwrap_or(0o755)
    }

    /// The release directory name: version and commit, so different builds never share one.
    pub fn id(&self) -> String {
        format!("{}-{}", self.version, &self.commit[..self.commit.len().min(12)])
    }
}

/// Check the hashes of a bundle's `bin/` files (name → SHA-256 as computed) against the manifest.
pub fn check_files(m: &Manifest, found: &BTreeMap<String, String>) -> Result<(), InvalidInput> {
    for (name, want) in &m.binaries {
        match found.get(name) {
            None => return Err(bad(&format!("bin/{name}"), "listed in the manifest but not in the bundle")),
            Some(got) if got != want => {
                return Err(bad(
                    &format!("bin/{name}"),
                    format!(
                        "SHA-256 {got} does not match the manifest's {want}: the bundle is corrupt or tampered with"
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    if let Some(extra) = found.keys().find(|k| !m.binaries.contains_key(*k)) {
        return Err(bad(&format!("bin/{extra}"), "not listed in the manifest"));
    }
    Ok(())
}

/// The releases to keep: the current one, the one this run switched away from, and up to `extra`
/// more of the others, newest first (`by_age` is newest first).
pub(crate) fn releases_to_keep(
    current: Option<&str>,
    previous: Option<&str>,
    by_age: &[String],
    extra: usize,
) -> Vec<String> {
    let mut keep: Vec<String> = current.into_iter().chain(previous).map(str::to_owned).collect();
    let room = extra.saturating_sub(keep.len().saturating_sub(1));
    let others: Vec<String> = by_age.iter().filter(|r| !keep.contains(r)).take(room).cloned().collect();
    keep.extend(others);
    keep
}

/// A path inside a bundle archive: relative, plain components, no `..`.
pub(crate) fn safe_member(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with('/')
        && path.split('/').all(|c| !c.is_empty() && c != ".." && !c.contains('\0'))
        || path.trim_end_matches('/') == "."
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(extra: &str) -> String {
        let mut s = String::from(
            "version = \"1.4.2\"\ncommit = \"0123456789abcdef0123\"\nbroker_features = [\"auth-email-link\", \"sqlite\"]\n[binaries]\n",
        );
        for b in required_binaries() {
            s.push_str(&format!("{b} = \"{}\"\n", "a".repeat(64)));
        }
        s + extra
    }

    #[test]
    fn an_optional_binary_may_ship_or_not() {
        let optional =
            ["agentkeys-worker-channel", "agentkeys-mcp-server", "agentkeys-gate", "agentkeys-worker-channel-weixin"];
        for b in optional {
            assert!(!required_binaries().contains(&b), "{b}");
            assert!(known_binaries().contains(&b), "{b}");
            let with = manifest(&format!("{b} = \"{}\"\n", "b".repeat(64)));
            assert!(parse_manifest(&with).expect("valid").binaries.contains_key(b), "{b}");
            assert!(!parse_manifest(&manifest("")).expect("valid").binaries.contains_key(b), "{b}");
        }
    }

    #[test]
    fn manifests_are_validated() {
        let m = parse_manifest(&manifest("")).expect("valid");
        assert_eq!(m.id(), "1.4.2-0123456789ab");
        for (text, fragment) in [
            (manifest("").replace("\"auth-email-link\", ", ""), "auth-email-link"),
            (manifest("").replace("1.4.2", "1.4 2"), "version"),
            (manifest("").replace("0123456789abcdef0123", "xyz"), "commit"),
            (manifest("rogue = \"aa\"\n"), "binaries.rogue"),
            (manifest("").replacen(&"a".repeat(64), &"A".repeat(64), 1), "SHA-256"),
            (
                manifest("").lines().filter(|l| !l.starts_with("agentkeys-bundler")).collect::<Vec<_>>().join("\n"),
                "agentkeys-bundler is missing",
            ),
            (manifest("").replace("version", "versoin"), "unknown field"),
        ] {
            let err = parse_manifest(&text).expect_err(fragment).to_string();
            assert!(err.contains(fragment), "{fragment}: {err}");
        }
    }

    #[test]
    fn which_releases_are_kept() {
        let by_age: Vec<String> = ["d", "c", "b", "a"].iter().map(|s| (*s).to_owned()).collect();
        // (current, previous, extra) -> kept
        type Row = (Option<&'static str>, Option<&'static str>, usize, &'static [&'static str]);
        let table: &[Row] = &[
            (Some("d"), Some("c"), 1, &["d", "c"]),
            (Some("d"), None, 1, &["d", "c"]),
            (Some("d"), None, 2, &["d", "c", "b"]),
            (Some("c"), None, 1, &["c", "d"]),
            (Some("d"), Some("b"), 2, &["d", "b", "c"]),
            (Some("d"), None, 0, &["d"]),
            (None, None, 1, &["d"]),
        ];
        for (current, previous, extra, want) in table {
            assert_eq!(
                releases_to_keep(*current, *previous, &by_age, *extra),
                *want,
                "{current:?} {previous:?} {extra}"
            );
        }
    }

    #[test]
    fn files_must_match_exactly() {
        let m = parse_manifest(&manifest("")).expect("valid");
        let mut found: BTreeMap<String, String> = m.binaries.clone();
        assert!(check_files(&m, &found).is_ok());
        found.insert("agentkeys-bundler".into(), "b".repeat(64));
        assert!(check_files(&m, &found).expect_err("tampered").to_string().contains("tampered"));
        found.remove("agentkeys-bundler");
        assert!(check_files(&m, &found).expect_err("missing").to_string().contains("not in the bundle"));
        assert!(
            safe_member("bin/agentkeys-bundler")
                && safe_member("./")
                && !safe_member("../x")
                && !safe_member("/etc/passwd")
                && !safe_member("bin/../../x")
        );
    }
}

#[cfg(test)]
mod trust_tests {
    use super::*;

    const MANIFEST_TEXT: &str = include_str!("../../../tests/fixtures/release/manifest.toml");
    const SIG: &str = include_str!("../../../tests/fixtures/release/manifest.toml.minisig");

    fn key(text: &str) -> String {
        text.lines().last().expect("a key line").trim().to_owned()
    }

    fn trust(keys: &[&str]) -> Trust {
        Trust { keys: keys.iter().map(|k| key(k)).collect(), ..Trust::default() }
    }

    #[test]
    fn a_manifest_signed_by_a_pinned_key_passes_and_nothing_else_does() {
        let (a, b) = (
            include_str!("../../../tests/fixtures/release/a.pub"),
            include_str!("../../../tests/fixtures/release/b.pub"),
        );
        let now = 1_800_000_100;
        let m = check_trust(MANIFEST_TEXT, Some(SIG), &trust(&[a]), now).expect("signed by a");
        assert_eq!(m.version, "2.0.0");
        assert!(check_trust(MANIFEST_TEXT, Some(SIG), &trust(&[b, a]), now).is_ok(), "one of several keys (rotation)");
        let err = |r: Result<Manifest, InvalidInput>| r.expect_err("refused").to_string();
        assert!(err(check_trust(MANIFEST_TEXT, Some(SIG), &trust(&[b]), now)).contains("does not pin"));
        assert!(err(check_trust(MANIFEST_TEXT, None, &trust(&[a]), now)).contains("not signed"));
        let edited = MANIFEST_TEXT.replace("2.0.0", "2.0.1");
        assert!(err(check_trust(&edited, Some(SIG), &trust(&[a]), now)).contains("does not verify"));
        assert!(err(check_trust(MANIFEST_TEXT, Some(SIG), &trust(&[a]), 1_800_604_800)).contains("expired"));
        let older = Trust { highest: Some("2.1.0".into()), ..trust(&[a]) };
        assert!(err(check_trust(MANIFEST_TEXT, Some(SIG), &older, now)).contains("older than 2.1.0"));
        let allowed = Trust { allow_downgrade: true, ..older };
        assert!(check_trust(MANIFEST_TEXT, Some(SIG), &allowed, now).is_ok(), "a deliberate downgrade");
        assert!(err(check_trust(MANIFEST_TEXT, Some(SIG), &trust(&["RWQnot-a-key"]), now)).contains("release.keys"));
        assert!(
            check_trust(MANIFEST_TEXT, None, &Trust::default(), now).is_ok(),
            "no keys pinned: the sha256 pin alone"
        );
    }

    #[test]
    fn versions_compare_by_their_numbers() {
        use std::cmp::Ordering::{Equal, Greater, Less};
        for (a, b, want) in [
            ("1.10.0", "1.9.3", Greater),
            ("1.2", "1.2.0", Equal),
            ("1.2.0-rc1", "1.2.0", Less),
            ("2.0.0", "10.0.0", Less),
            ("1.2.0-rc2", "1.2.0-rc1", Greater),
        ] {
            assert_eq!(version_cmp(a, b), want, "{a} vs {b}");
        }
        assert_eq!(new_highest("1.2.0", None).as_deref(), Some("1.2.0"));
        assert_eq!(new_highest("1.2.0", Some("1.10.0")), None, "an older one does not lower it");
        assert_eq!(new_highest("1.10.0", Some("1.2.0")).as_deref(), Some("1.10.0"));
        assert_eq!(new_highest("adopted", None), None);
    }

    #[test]
    fn binary_modes_are_signed_and_never_dangerous() {
        let with = |mode: &str| {
            MANIFEST_TEXT.replacen("[binaries]", &format!("[modes]\nagentkeys-bundler = \"{mode}\"\n[binaries]"), 1)
        };
        let m = parse_manifest(&with("0550")).expect("a read-only executable");
        assert_eq!((m.mode_of("agentkeys-bundler"), m.mode_of("agentkeys-broker-server")), (0o550, 0o755));
        for bad in ["4755", "0777", "0644", "755", "0x55"] {
            let e = parse_manifest(&with(bad)).expect_err(bad).to_string();
            assert!(e.contains("modes.agentkeys-bundler"), "{bad}: {e}");
        }
    }
}
