//! The built packages, checked with their own tools: lintian reports no error on the .deb, its
//! binary needs no glibc symbol newer than 2.31 (Debian 11) and `Depends` states that minimum,
//! systemd and nginx; the .rpm (Amazon Linux 2023) is rpmlint-clean, holds the .deb's binary byte
//! for byte and the same files in Fedora-family paths, its configuration `%config(noreplace)`.
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

/// The .rpm in `$AGENTKEYS_RPM`, else built now from the .deb.
fn rpm_package(deb: &std::path::Path) -> std::path::PathBuf {
    if let Ok(p) = std::env::var("AGENTKEYS_RPM") {
        return p.into();
    }
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/build-rpm.sh");
    let out = Command::new(script).arg(deb).output().expect("packaging/build-rpm.sh");
    assert!(out.status.success(), "build-rpm.sh failed:\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().last().expect("a path").trim().into()
}

fn rpm_query(rpm: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new("rpm").arg("-qp").args(args).arg(rpm).output().expect("rpm");
    assert!(out.status.success(), "rpm -qp {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Where a .deb path lives in the .rpm; `None`: Debian-only (its changelog and copyright).
fn rpm_path(deb_path: &str) -> Option<String> {
    if deb_path.starts_with("/usr/share/doc/agentkeys-hostd/changelog") || deb_path.ends_with("/copyright") {
        return None;
    }
    Some(
        deb_path
            .replace("/lib/systemd/system/", "/usr/lib/systemd/system/")
            .replace("/usr/share/zsh/vendor-completions/", "/usr/share/zsh/site-functions/"),
    )
}

#[test]
fn the_rpm_is_rpmlint_clean_and_ships_the_debs_files() {
    let deb = common::deb::package("AGENTKEYS_DEB", None);
    let rpm = rpm_package(&deb);
    let config = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/rpm/rpmlint.toml");
    let lint = Command::new("rpmlint").arg("-c").arg(&config).arg(&rpm).output().expect("rpmlint");
    let text = String::from_utf8_lossy(&lint.stdout);
    eprintln!("rpmlint:\n{text}");
    assert!(text.contains(" 0 errors, 0 warnings"), "rpmlint is not clean:\n{text}");

    // The .deb's regular files, each at its Fedora-family path, with the same content.
    let dir = tempfile::tempdir().unwrap();
    assert!(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(dir.path()).status().unwrap().success());
    let mut from_deb = std::collections::BTreeMap::new();
    let list = Command::new("find").arg(dir.path()).args(["-type", "f"]).output().unwrap();
    for f in String::from_utf8_lossy(&list.stdout).lines() {
        let inside = f.strip_prefix(dir.path().to_str().unwrap()).unwrap();
        if let Some(path) = rpm_path(inside) {
            let sum = Command::new("sha256sum").arg(f).output().unwrap();
            from_deb.insert(path, String::from_utf8_lossy(&sum.stdout).split(' ').next().unwrap().to_owned());
        }
    }
    let mut from_rpm = std::collections::BTreeMap::new();
    for line in rpm_query(&rpm, &["--dump"]).lines() {
        let f: Vec<&str> = line.split(' ').collect();
        if f[4].starts_with("0100") {
            from_rpm.insert(f[0].to_owned(), f[3].to_owned());
        }
    }
    assert_eq!(from_rpm, from_deb, "the .rpm's files and digests against the .deb's");
    eprintln!("{} files, the same bytes in both packages", from_rpm.len());

    // The configuration survives an operator's edit on upgrade; the state directory is owned.
    let flags = rpm_query(&rpm, &["--qf", "[%{FILENAMES} %{FILEFLAGS:fflags}\n]"]);
    assert!(flags.lines().any(|l| l == "/etc/agentkeys/hostd.toml cn"), "{flags}");
    assert!(flags.lines().any(|l| l.trim() == "/var/lib/agentkeys-hostd"), "{flags}");
    let scripts = rpm_query(&rpm, &["--scripts"]);
    for s in ["postinstall", "preuninstall", "postuninstall"] {
        assert!(scripts.contains(&format!("{s} scriptlet")), "{s} missing:\n{scripts}");
    }

    // What it requires: the services it drives, and glibc no newer than 2.31.
    let requires = rpm_query(&rpm, &["-R"]);
    eprintln!("rpm -qpR:\n{requires}");
    for dep in ["systemd", "nginx", "ca-certificates"] {
        assert!(requires.lines().any(|l| l.trim() == dep), "{dep} missing: {requires}");
    }
    let newest = requires
        .lines()
        .filter_map(|l| l.split("(GLIBC_").nth(1))
        .filter_map(|v| {
            let v = v.split(')').next()?;
            let mut p = v.split('.').map(|n| n.parse::<u32>().ok());
            Some((p.next()??, p.next().flatten().unwrap_or(0)))
        })
        .max()
        .expect("glibc requirements");
    assert!(newest <= (2, 31), "the .rpm requires GLIBC_{}.{}", newest.0, newest.1);
}
