//! The failpoint matrix on a real-systemd host: a run is killed (SIGKILL) at each risky step of
//! apply — each atomic write before and after its rename, a link switch, between daemon-reload and
//! restarts, mid health gate, mid certificate install, mid release switch — then the next
//! `reconcile` converges, every service is healthy, every secret, KEK, keypair, ACME account and
//! certificate key that existed is byte-identical (the rest exist and are whole), and no temp file
//! is left behind. Needs `--features agentkeys-hostd/failpoints` (tests/run.sh builds with it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use common::container::Container;
use common::in_container::{ACME, start_pebble};
use common::{ACCOUNT, BASE_CONFIG, bundle};

const DECLARE: [&str; 7] = ["--ci", "--slot", "2", "--zone", "litentry.org", "--account-id", ACCOUNT];
const BROKER: &str = "broker-test-2.litentry.org";

/// Every secret-bearing file hostd keeps: the env files with KEKs and the master secret, the
/// broker's keypairs, the ACME account, and the broker host's certificate key.
fn secret_files(c: &Container) -> BTreeMap<String, Option<Vec<u8>>> {
    let mut files: Vec<String> = common::SECRET_FILES.map(str::to_owned).to_vec();
    if let Ok(entries) = std::fs::read_dir(c.path("/var/lib/agentkeys-hostd/acme")) {
        let names = entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned());
        // The account's credentials (the ledger and the ARI cache are bookkeeping that may change).
        files.extend(names.filter(|n| n.contains("account")).map(|n| format!("/var/lib/agentkeys-hostd/acme/{n}")));
    }
    files.push(format!("/var/lib/agentkeys-hostd/tls/{BROKER}/current/privkey.pem"));
    files.into_iter().map(|p| (p.clone(), std::fs::read(c.path(&p)).ok())).collect()
}

/// Files named like hostd's temp files anywhere hostd writes.
fn leftover_temps(c: &Container) -> Vec<String> {
    let root = c.path("/");
    let out = Command::new("find")
        .arg(root.join("etc"))
        .arg(root.join("var/lib"))
        .arg(root.join("opt"))
        .args(["-name", "*.hostd-tmp-*"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect()
}

/// The certificate key matches the certificate (a validly replaced pair, never half of each).
fn key_matches_cert(c: &Container, host: &str) {
    let dir = c.path(&format!("/var/lib/agentkeys-hostd/tls/{host}/current"));
    let pubkey = |args: &[&str]| Command::new("openssl").args(args).output().unwrap().stdout;
    let from_key = pubkey(&["pkey", "-pubout", "-in", dir.join("privkey.pem").to_str().unwrap()]);
    let from_cert = pubkey(&["x509", "-pubkey", "-noout", "-in", dir.join("fullchain.pem").to_str().unwrap()]);
    assert!(!from_key.is_empty() && from_key == from_cert, "{host}: key and certificate do not match");
}

/// Kill a run at `point` (`name` or `name@N`), then prove the next run finishes the job.
fn crash_then_converge(c: &Container, point: &str, args: &[&str], acme: bool) {
    let mut first = vec!["/usr/bin/agentkeys-hostd", "reconcile", "--json"];
    if !acme {
        first.push("--no-acme");
    }
    first.extend_from_slice(args);
    let out = c.spawn(&first, &[("AGENTKEYS_HOSTD_FAILPOINT", point)]).wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains(&format!("failpoint {}", point.split('@').next().unwrap())),
        "{point}: the failpoint did not fire (build with --features agentkeys-hostd/failpoints):\n{stderr}"
    );
    let after_crash = secret_files(c);
    let run = if acme { c.reconcile_acme(args) } else { c.reconcile(args) };
    assert_eq!(run.code, 0, "{point}: the completing run failed:\n{}\n{}", run.stdout, run.stderr);
    let s = run.json();
    assert_eq!(s["healthy"], 10, "{point}: {}", run.stdout);
    assert!(c.main_pids().values().all(|v| v.starts_with("active ")), "{point}: {:?}", c.main_pids());
    for (path, now) in secret_files(c) {
        if path.contains("/tls/") && !acme {
            continue;
        }
        let now = now.unwrap_or_else(|| panic!("{point}: {path} missing after the completing run"));
        assert!(!now.is_empty(), "{point}: {path} is empty");
        if let Some(Some(before)) = after_crash.get(&path) {
            let renewed_cert = path.contains("/tls/");
            assert!(renewed_cert || &now == before, "{point}: {path} changed after the crash");
        }
    }
    if acme {
        key_matches_cert(c, BROKER);
    }
    assert_eq!(leftover_temps(c), Vec::<String>::new(), "{point}: temp files left behind");
    let again = if acme { c.reconcile_acme(&[]) } else { c.reconcile(&[]) };
    assert_eq!(again.json()["changed"], 0, "{point}: not converged: {}", again.stdout);
    eprintln!("{point}: crashed, completed, converged");
}

#[test]
fn crashes_during_file_writes_on_a_fresh_host() {
    // The first run on a fresh host writes secrets, keypairs, units, env files and vhosts.
    for point in ["write-temp@1", "write-temp@6", "write-renamed@3", "write-renamed@20", "link-temp@1", "after-files"] {
        let c = Container::boot(BASE_CONFIG);
        crash_then_converge(&c, point, &DECLARE, false);
    }
}

#[test]
fn crashes_between_daemon_reload_restarts_and_the_health_gate() {
    for point in ["after-daemon-reload", "mid-restarts", "before-health", "mid-health", "after-health"] {
        let c = Container::boot(BASE_CONFIG);
        crash_then_converge(&c, point, &DECLARE, false);
    }
}

#[test]
fn crashes_during_a_certificate_install() {
    for point in ["cert-key-written@1", "cert-chain-written@3", "write-temp@40"] {
        let c = Container::boot(&format!("{BASE_CONFIG}\n{ACME}"));
        let dir = tempfile::tempdir().unwrap();
        start_pebble(&c, dir.path(), 80);
        crash_then_converge(&c, point, &DECLARE, true);
    }
}

#[test]
fn crashes_during_a_release_switch() {
    for point in ["release-staged", "release-switched"] {
        let c = Container::boot(BASE_CONFIG);
        assert_eq!(c.reconcile(&DECLARE).code, 0);
        bundle::write(&c.path("/root/release-b"), "2.0.0", "bbbbbbbbbbbbbbbb", &[("agentkeys-broker", b"build b")]);
        let args = ["--release", "/root/release-b"];
        crash_then_converge(&c, point, &args, false);
        let current = std::fs::read_link(c.path("/opt/agentkeys/current")).unwrap();
        assert_eq!(current.to_string_lossy(), "releases/2.0.0-bbbbbbbbbbbb", "{point}");
    }
}

#[test]
fn a_crash_between_the_https_vhosts_and_the_reload_is_finished_by_the_next_run() {
    // On a fresh host the second file step is the certificate step's: the vhosts flip to HTTPS,
    // then nginx is reloaded. Killed in between, the next run must still have nginx serve them.
    let c = Container::boot(&format!("{BASE_CONFIG}\n{ACME}"));
    let dir = tempfile::tempdir().unwrap();
    start_pebble(&c, dir.path(), 80);
    crash_then_converge(&c, "after-files@2", &DECLARE, true);
    let status = c.exec(&["/usr/bin/agentkeys-hostd", "status", "--json"]);
    let st: serde_json::Value = serde_json::from_str(status.stdout.lines().next().unwrap()).unwrap();
    assert!(st["pending"].is_null(), "nothing left owed: {}", status.stdout);
    let ca = dir.path().join("ca.pem");
    let roots = ["curl", "-sf", "--cacert", ca.to_str().unwrap(), "https://127.0.0.1:15000/roots/0"];
    let issuing = dir.path().join("issuing-root.pem");
    std::fs::write(&issuing, common::in_container::in_netns(&c, &roots).stdout).unwrap();
    let served = common::in_container::served_serial(&c, BROKER, &issuing);
    assert!(served.starts_with("serial="), "handshake failed or not verified: {served:?}");
    assert_eq!(served, common::in_container::installed_serial(&c, BROKER), "nginx serves the installed certificate");
}
