//! The built .deb, checked with Debian's own tools: lintian reports no error, the binary needs
//! no glibc symbol newer than 2.35 (Ubuntu 22.04), and `Depends` states that minimum, systemd
//! and nginx.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

fn glibc_versions(binary: &std::path::Path) -> Vec<(u32, u32)> {
    let out = Command::new("objdump").arg("-T").arg(binary).output().expect("objdump (binutils)");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let mut v: Vec<(u32, u32)> = text
        .split_whitespace()
        .filter_map(|w| w.trim_matches(['(', ')']).strip_prefix("GLIBC_"))
        .filter_map(|ver| {
            let mut it = ver.split('.');
            Some((it.next()?.parse().ok()?, it.next().unwrap_or("0").parse().ok()?))
        })
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

#[test]
fn lintian_clean_glibc_2_31_and_depends() {
    let deb = common::deb::package("AGENTKEYS_DEB", None);
    let dir = tempfile::tempdir().unwrap();
    let x = Command::new("dpkg-deb").arg("-x").arg(&deb).arg(dir.path()).status().unwrap();
    assert!(x.success());
    let binary = dir.path().join("usr/bin/agentkeys-hostd");
    let versions = glibc_versions(&binary);
    let newest = *versions.last().expect("a dynamically linked binary");
    eprintln!("newest glibc symbol version: GLIBC_{}.{}", newest.0, newest.1);
    // 2.31: Debian 11 (the matrix's oldest release); Ubuntu 22.04 has 2.35, Amazon Linux 2023 2.34.
    assert!(newest <= (2, 31), "needs GLIBC_{}.{}: it would not run on Debian 11", newest.0, newest.1);
    let control = Command::new("dpkg-deb").args(["-f"]).arg(&deb).arg("Depends").output().unwrap();
    let depends = String::from_utf8_lossy(&control.stdout);
    let libc = depends.split(',').map(str::trim).find(|d| d.starts_with("libc6 (>= ")).expect("libc6 in Depends");
    let min = libc.trim_start_matches("libc6 (>= ").trim_end_matches(')');
    assert_eq!(min, format!("{}.{}", newest.0, newest.1), "Depends states the real minimum: {depends}");
    for dep in ["systemd", "nginx", "ca-certificates"] {
        assert!(depends.split(',').any(|d| d.trim() == dep), "{dep} missing in Depends: {depends}");
    }

    let out = Command::new("lintian").args(["--no-tag-display-limit"]).arg(&deb).output().expect("lintian");
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("lintian:\n{text}");
    let errors: Vec<&str> = text.lines().filter(|l| l.starts_with("E:")).collect();
    assert!(errors.is_empty(), "lintian errors:\n{}", errors.join("\n"));
}

#[test]
fn the_glibc_check_can_fail() {
    // A control: Debian 12's own bash needs GLIBC_2.36, and the same parser sees it.
    let newest = glibc_versions(std::path::Path::new("/usr/bin/bash")).last().copied().unwrap();
    assert!(newest > (2, 31), "bash needs {newest:?}");
}
