//! Release bundles for tests: every required service binary is the stand-in, optionally with bytes appended
//! (a different build of the same program), plus a manifest with their SHA-256.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use sha2::Digest;

fn hex(b: &[u8]) -> String {
    sha2::Sha256::digest(b).iter().map(|x| format!("{x:02x}")).collect()
}

/// Write a bundle directory at `dir`: `changed` lists (binary, bytes appended to the stand-in).
pub fn write(dir: &Path, version: &str, commit: &str, changed: &[(&str, &[u8])]) {
    let standin = std::fs::read(super::container::standin()).unwrap();
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    let mut manifest = format!(
        "version = \"{version}\"\ncommit = \"{commit}\"\nbroker_features = [\"auth-email-link\"]\n[binaries]\n"
    );
    // The required services only (a release without the optional channel worker, as most are).
    for name in hostd::decide::release::required_binaries() {
        let mut bytes = standin.clone();
        if let Some((_, extra)) = changed.iter().find(|(n, _)| *n == name) {
            bytes.extend_from_slice(extra);
        }
        let path = dir.join("bin").join(name);
        super::write_executable(&path, &bytes);
        manifest.push_str(&format!("{name} = \"{}\"\n", hex(&bytes)));
    }
    std::fs::write(dir.join("agentkeys-release.toml"), manifest).unwrap();
}
