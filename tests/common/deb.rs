//! The .deb under test: built once by packaging/build-deb.sh (tests/run.sh exports the paths).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The package in `$var`, else built now (`version`: a rebuilt package with that Debian version).
pub fn package(var: &str, version: Option<&str>) -> PathBuf {
    if let Ok(p) = std::env::var(var) {
        return PathBuf::from(p);
    }
    // One build at a time in this process: two would race on target/assets and target/debian.
    static BUILDING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = BUILDING.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/build-deb.sh");
    let mut cmd = Command::new(script);
    if let Some(v) = version {
        cmd.args(["--deb-version", v]);
    }
    let out = cmd.output().expect("packaging/build-deb.sh");
    assert!(out.status.success(), "build-deb.sh failed:\n{}", String::from_utf8_lossy(&out.stderr));
    PathBuf::from(String::from_utf8_lossy(&out.stdout).lines().last().expect("a path").trim())
}
