//! Signed releases on a real-systemd host: the manifest signed with minisign by a pinned release
//! key; signed A → signed B restarts only what changed; a tampered file, an added file, an
//! unsigned bundle, a manifest changed after signing, an unknown key, an expired manifest, a lower
//! version and a replayed older bundle are each refused (exit 2, naming what failed) with nothing
//! changed; rotation: with the old key removed from the host, its signature no longer ships.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::container::Container;
use common::{ACCOUNT, BASE_CONFIG, bundle};

/// A password-less minisign key pair in `dir`: (public key line, secret key file).
fn keypair(dir: &Path, name: &str) -> (String, PathBuf) {
    let (p, s) = (dir.join(format!("{name}.pub")), dir.join(format!("{name}.key")));
    let out = Command::new("minisign").args(["-G", "-W", "-f", "-p"]).arg(&p).arg("-s").arg(&s).output().unwrap();
    assert!(out.status.success(), "minisign -G: {}", String::from_utf8_lossy(&out.stderr));
    let public = std::fs::read_to_string(&p).unwrap().lines().last().unwrap().trim().to_owned();
    (public, s)
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// A bundle at `dir` expiring at `expires` (unix), optionally signed with `key`.
fn signed_bundle(dir: &Path, version: &str, commit: &str, changed: &[(&str, &[u8])], expires: i64, key: Option<&Path>) {
    bundle::write(dir, version, commit, changed);
    let m = dir.join("agentkeys-release.toml");
    let text = std::fs::read_to_string(&m).unwrap();
    let dated =
        text.replacen("[binaries]\n", &format!("created_unix = {}\nexpires_unix = {expires}\n[binaries]\n", now()), 1);
    std::fs::write(&m, dated).unwrap();
    if let Some(key) = key {
        let out = Command::new("minisign").args(["-S", "-s"]).arg(key).arg("-m").arg(&m).output().unwrap();
        assert!(out.status.success(), "minisign -S: {}", String::from_utf8_lossy(&out.stderr));
    }
}

/// What must not change when a bundle is refused.
fn snapshot(c: &Container) -> (Vec<String>, String, Vec<u8>, std::collections::BTreeMap<String, String>) {
    let mut r: Vec<String> = std::fs::read_dir(c.path("/opt/agentkeys/releases"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    r.sort();
    let current = std::fs::read_link(c.path("/opt/agentkeys/current")).unwrap().to_string_lossy().into_owned();
    (r, current, c.read("/etc/systemd/system/agentkeys-broker.service"), c.main_pids())
}

#[test]
fn only_the_pinned_release_keys_ship_and_nothing_older() {
    let keys = tempfile::tempdir().unwrap();
    let (old_pub, old_key) = keypair(keys.path(), "old");
    let (new_pub, new_key) = keypair(keys.path(), "new");
    let (_, stranger) = keypair(keys.path(), "stranger");
    let pin = |ks: &[&str]| {
        let list: Vec<String> = ks.iter().map(|k| format!("\"{k}\"")).collect();
        format!("{BASE_CONFIG}\n[release]\nkeys = [{}]\n", list.join(", "))
    };
    let c = Container::boot(&pin(&[&old_pub, &new_pub]));
    let day = now() + 86_400;
    signed_bundle(&c.path("/root/a"), "1.0.0", "aaaaaaaaaaaaaaaa", &[], day, Some(&old_key));
    let run = c.reconcile(&[
        "--ci",
        "--slot",
        "2",
        "--zone",
        "litentry.org",
        "--account-id",
        ACCOUNT,
        "--release",
        "/root/a",
    ]);
    assert_eq!(run.code, 0, "signed A: {}\n{}", run.stdout, run.stderr);

    // Signed by the other pinned key, two binaries changed: only those restart.
    let pids = c.main_pids();
    let changed: &[(&str, &[u8])] = &[("agentkeys-bundler", b"\0b"), ("agentkeys-worker-email", b"\0b")];
    signed_bundle(&c.path("/root/b"), "1.1.0", "bbbbbbbbbbbbbbbb", changed, day, Some(&new_key));
    let run = c.reconcile(&["--release", "/root/b"]);
    assert_eq!(run.code, 0, "signed B: {}\n{}", run.stdout, run.stderr);
    let after = c.main_pids();
    for (unit, pid) in &pids {
        let moved = unit == "agentkeys-bundler.service" || unit == "agentkeys-worker-email.service";
        assert_eq!(&after[unit] != pid, moved, "{unit}");
    }

    let bad = c.path("/root/bad");
    let case = |name: &str| bad.join(name);
    signed_bundle(&case("tampered"), "1.2.0", "cccccccccccccccc", &[], day, Some(&new_key));
    let bin = case("tampered").join("bin/agentkeys-bundler");
    let mut bytes = std::fs::read(&bin).unwrap();
    bytes.push(0);
    std::fs::write(&bin, bytes).unwrap();
    signed_bundle(&case("added"), "1.2.0", "cccccccccccccccc", &[], day, Some(&new_key));
    std::fs::write(case("added").join("bin/agentkeys-backdoor"), b"#!/bin/sh\n").unwrap();
    signed_bundle(&case("unsigned"), "1.2.0", "cccccccccccccccc", &[], day, None);
    signed_bundle(&case("edited"), "1.2.0", "cccccccccccccccc", &[], day, Some(&new_key));
    let m = case("edited").join("agentkeys-release.toml");
    std::fs::write(&m, std::fs::read_to_string(&m).unwrap().replace("1.2.0", "1.2.1")).unwrap();
    signed_bundle(&case("stranger"), "1.2.0", "cccccccccccccccc", &[], day, Some(&stranger));
    signed_bundle(&case("expired"), "1.2.0", "cccccccccccccccc", &[], now() - 60, Some(&new_key));
    signed_bundle(&case("older"), "0.9.0", "dddddddddddddddd", &[], day, Some(&new_key));
    let before = snapshot(&c);
    for (name, says) in [
        ("tampered", "does not match the manifest"),
        ("added", "not listed in the manifest"),
        ("unsigned", "not signed"),
        ("edited", "does not verify"),
        ("stranger", "does not pin"),
        ("expired", "expired"),
        ("older", "older than 1.1.0"),
    ] {
        let inside = format!("/root/bad/{name}");
        let run = c.reconcile(&["--release", &inside]);
        assert_eq!(run.code, 2, "{name}: {}\n{}", run.stdout, run.stderr);
        assert!(run.stderr.contains(says), "{name}: {}", run.stderr);
        assert!(snapshot(&c) == before, "{name}: something changed");
    }
    // A replayed older signed bundle (A, validly signed) is a rollback too, unless asked for.
    let replay = c.reconcile(&["--release", "/root/a"]);
    assert_eq!(replay.code, 2, "{}", replay.stderr);
    assert!(replay.stderr.contains("older than 1.1.0"), "{}", replay.stderr);
    assert!(snapshot(&c) == before, "replay: something changed");

    // Rotation: the old key removed from the host → its signature no longer ships; the new one does.
    c.write("/etc/agentkeys/hostd.toml", &pin(&[&new_pub]));
    signed_bundle(&c.path("/root/c-old"), "1.2.0", "eeeeeeeeeeeeeeee", &[], day, Some(&old_key));
    let run = c.reconcile(&["--release", "/root/c-old"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("does not pin"), "{}", run.stderr);
    signed_bundle(&c.path("/root/c-new"), "1.2.0", "eeeeeeeeeeeeeeee", &[], day, Some(&new_key));
    let run = c.reconcile(&["--release", "/root/c-new"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
}

#[test]
fn release_verify_checks_a_bundle_offline() {
    let dir = tempfile::tempdir().unwrap();
    let (public, key) = keypair(dir.path(), "ci");
    let (other, _) = keypair(dir.path(), "other");
    let b = dir.path().join("b");
    signed_bundle(&b, "1.3.0", "ffffffffffffffff", &[], now() + 3_600, Some(&key));
    let verify = |key: &str| common::run_in(dir.path(), &["release", "verify", b.to_str().unwrap(), "--key", key]);
    let ok = verify(&public);
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    assert!(ok.stdout.starts_with("verified: release 1.3.0-ffffffffffff (signed by a pinned key; "), "{}", ok.stdout);
    let wrong = verify(&other);
    assert_eq!(wrong.code, 2, "{}", wrong.stderr);
    assert!(wrong.stderr.contains("does not pin"), "{}", wrong.stderr);
    std::fs::write(b.join("bin/agentkeys-bundler"), b"#!/bin/sh\nexit 0\n").unwrap();
    let tampered = verify(&public);
    assert_eq!(tampered.code, 2, "{}", tampered.stderr);
    assert!(tampered.stderr.contains("bin/agentkeys-bundler"), "{}", tampered.stderr);
}
