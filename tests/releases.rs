//! Releases on a real host: verified bundles, one atomic switch, restarts only for changed
//! binaries, health-gated rollback, refusals that change nothing, and SSM-style runs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use common::container::Container;
use common::{ACCOUNT, BASE_CONFIG, bundle};

fn on_release_a() -> Container {
    let c = Container::boot(BASE_CONFIG);
    bundle::write(&c.path("/root/release-a"), "1.0.0", "aaaaaaaaaaaaaaaa", &[]);
    let run = c.reconcile(&[
        "--ci",
        "--slot",
        "2",
        "--zone",
        "litentry.org",
        "--account-id",
        ACCOUNT,
        "--release",
        "/root/release-a",
    ]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.json()["release"], "1.0.0-aaaaaaaaaaaa");
    c
}

fn releases(c: &Container) -> Vec<String> {
    let mut r: Vec<String> = std::fs::read_dir(c.path("/opt/agentkeys/releases"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    r.sort();
    r
}

fn current(c: &Container) -> String {
    std::fs::read_link(c.path("/opt/agentkeys/current")).unwrap().to_string_lossy().into_owned()
}

#[test]
fn a_release_restarts_exactly_the_services_whose_binary_changed() {
    let c = on_release_a();
    let pids = c.main_pids();
    bundle::write(
        &c.path("/root/release-b"),
        "1.1.0",
        "bbbbbbbbbbbbbbbb",
        &[("agentkeys-worker-email", b"\0b"), ("agentkeys-bundler", b"\0b")],
    );
    let run = c.reconcile(&["--release", "/root/release-b"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let s = run.json();
    let restarts: Vec<&String> = s["restarts"].as_object().unwrap().keys().collect();
    assert_eq!(restarts, ["agentkeys-bundler.service", "agentkeys-worker-email.service"], "{}", run.stdout);
    assert!(s["restarts"]["agentkeys-bundler.service"].to_string().contains("binary agentkeys-bundler changed"));
    let after = c.main_pids();
    for (unit, state) in &pids {
        let changed = unit == "agentkeys-bundler.service" || unit == "agentkeys-worker-email.service";
        assert_eq!(after[unit] != *state, changed, "{unit}: {state} → {}", after[unit]);
    }
    assert_eq!(current(&c), "releases/1.1.0-bbbbbbbbbbbb");
    assert_eq!(releases(&c), ["1.0.0-aaaaaaaaaaaa", "1.1.0-bbbbbbbbbbbb"], "the previous release is kept");
    let unit = String::from_utf8(c.read("/etc/systemd/system/agentkeys-bundler.service")).unwrap();
    assert!(unit.contains("ExecStart=/opt/agentkeys/current/bin/agentkeys-bundler"), "units run through current");
}

#[test]
fn a_release_that_fails_its_health_gate_is_rolled_back() {
    let c = on_release_a();
    bundle::write(&c.path("/root/release-b"), "1.1.0", "bbbbbbbbbbbbbbbb", &[("agentkeys-worker-audit", b"\0b")]);
    assert_eq!(c.reconcile(&["--release", "/root/release-b"]).code, 0);
    bundle::write(
        &c.path("/root/release-c"),
        "1.2.0",
        "cccccccccccccccc",
        &[("agentkeys-broker-server", b"\0standin:fail-health")],
    );
    let run = c.reconcile(&["--release", "/root/release-c"]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    let s = run.json();
    assert_eq!(s["result"], "rolled_back", "{}", run.stdout);
    assert_eq!(s["release"], "1.1.0-bbbbbbbbbbbb");
    assert!(run.stderr.contains("rolled_back: release 1.2.0-cccccccccccc failed"), "{}", run.stderr);
    assert!(run.stderr.contains("agentkeys-broker.service failed its health check"), "{}", run.stderr);
    assert!(run.stderr.contains("last journal lines of agentkeys-broker.service"), "{}", run.stderr);
    assert!(run.stdout.contains("done: rollback: switched back to release 1.1.0-bbbbbbbbbbbb"), "{}", run.stdout);
    assert_eq!(current(&c), "releases/1.1.0-bbbbbbbbbbbb");
    // Back on B and healthy: the next run has nothing to do.
    let again = c.reconcile(&[]);
    assert_eq!((again.code, again.json()["changed"].as_u64()), (0, Some(0)), "{}\n{}", again.stdout, again.stderr);
    assert!(again.json()["restarts"].as_object().unwrap().is_empty(), "{}", again.stdout);
    assert!(c.main_pids().values().all(|v| v.starts_with("active ")));
}

#[test]
fn bad_bundles_are_refused_and_nothing_changes() {
    let c = on_release_a();
    let pids = c.main_pids();
    let units = c.read("/etc/systemd/system/agentkeys-broker.service");
    let before = (releases(&c), current(&c));
    let b = c.path("/root/bad");
    // One byte changed in a binary.
    bundle::write(&b.join("tampered"), "1.1.0", "bbbbbbbbbbbbbbbb", &[]);
    let p = b.join("tampered/bin/agentkeys-bundler");
    let mut bytes = std::fs::read(&p).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xFF;
    std::fs::write(&p, bytes).unwrap();
    // A symlink pointing outside the bundle.
    bundle::write(&b.join("symlink"), "1.1.0", "bbbbbbbbbbbbbbbb", &[]);
    std::fs::remove_file(b.join("symlink/bin/agentkeys-bundler")).unwrap();
    std::os::unix::fs::symlink("/usr/bin/bash", b.join("symlink/bin/agentkeys-bundler")).unwrap();
    // A broker built without auth-email-link.
    bundle::write(&b.join("no-email-link"), "1.1.0", "bbbbbbbbbbbbbbbb", &[]);
    let m = b.join("no-email-link/agentkeys-release.toml");
    std::fs::write(&m, std::fs::read_to_string(&m).unwrap().replace("\"auth-email-link\"", "\"sqlite\"")).unwrap();
    // An archive whose member climbs out with ../
    let tarball = b.join("escape.tar.gz");
    {
        let gz = flate2::write::GzEncoder::new(std::fs::File::create(&tarball).unwrap(), flate2::Compression::fast());
        let mut t = tar::Builder::new(gz);
        let mut h = tar::Header::new_gnu();
        let data = b"x";
        h.set_size(1);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        let name = b"../../etc/cron.d/evil";
        h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name);
        h.set_cksum();
        t.append(&h, &data[..]).unwrap();
        t.into_inner().unwrap().finish().unwrap();
    }
    for (args, fragment) in [
        (vec!["--release", "/root/bad/tampered"], "tampered"),
        (vec!["--release", "/root/bad/symlink"], "links are refused"),
        (vec!["--release", "/root/bad/no-email-link"], "auth-email-link"),
        (vec!["--release", "/root/bad/escape.tar.gz"], "outside the release directory"),
        (vec!["--release", "https://releases.example.org/agentkeys-1.1.0.tar.zst"], "--sha256"),
        (vec!["--release", "/root/bad/escape.tar.gz", "--sha256", &"0".repeat(64)], "does not match --sha256"),
    ] {
        let run = c.reconcile(&args);
        assert_eq!(run.code, 2, "{args:?}: {}\n{}", run.stdout, run.stderr);
        assert!(run.stderr.contains(fragment), "{args:?}: {}", run.stderr);
        assert!(run.stdout.is_empty(), "{args:?}: {}", run.stdout);
        assert_eq!((releases(&c), current(&c)), before, "{args:?} changed the releases");
    }
    assert_eq!(c.read("/etc/systemd/system/agentkeys-broker.service"), units);
    assert_eq!(c.main_pids(), pids);
    assert!(!c.path("/etc/cron.d/evil").exists());
}

#[test]
fn an_ssm_style_run_with_no_environment_puts_a_small_json_summary_first() {
    let c = Container::boot(BASE_CONFIG);
    let run = |args: &[&str]| {
        let out = Command::new("nsenter")
            .args([
                "-t",
                &c.leader.to_string(),
                "-a",
                "env",
                "-i",
                "/usr/bin/agentkeys-hostd",
                "reconcile",
                "--json",
                "--no-acme",
            ])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stdout, stderr) = run(&["--ci", "--slot", "2", "--zone", "litentry.org", "--account-id", ACCOUNT]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    let first = stdout.lines().next().unwrap();
    let s: serde_json::Value = serde_json::from_str(first).unwrap();
    assert_eq!(s["result"], "changed");
    assert!(
        first.len() < 2048,
        "the summary is {} bytes (SSM keeps 24,000 characters of stdout): {first}",
        first.len()
    );
    let report: serde_json::Value =
        serde_json::from_slice(&c.read("/var/lib/agentkeys-hostd/last-report.json")).unwrap();
    assert!(report["done"].as_array().unwrap().len() > 40, "the full report is kept in the state directory");
    let journal = c.exec(&["journalctl", "-t", "agentkeys-hostd", "--no-pager", "-o", "cat"]);
    assert!(journal.stdout.contains("reconcile changed"), "the summary goes to the journal: {}", journal.stdout);
    let (code, stdout, _) = run(&[]);
    assert_eq!(code, Some(0));
    assert!(stdout.lines().next().unwrap().len() < 2048);
}
