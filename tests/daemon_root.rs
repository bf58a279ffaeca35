//! The daemon on a fake root (no systemd, no ACME): a hand edit is corrected by the drift check
//! and reported as corrective, a burst of configuration writes is one reconcile, SIGHUP is one
//! reconcile, the metrics endpoint answers on loopback, and SIGTERM ends it cleanly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{ACCOUNT, BASE_CONFIG, reconcile};

const SLOT2: [&str; 7] = ["--ci", "--slot", "2", "--zone", "litentry.org", "--account-id", ACCOUNT];

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn record(root: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(root.join("run/agentkeys-hostd/daemon.json")).unwrap_or_default();
    serde_json::from_str(&text).unwrap_or(serde_json::Value::Null)
}

/// Wait until the daemon's record satisfies `ok` (bounded).
fn wait_for(root: &Path, what: &str, ok: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = record(root);
        if ok(&r) {
            return r;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}; record: {r:#}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn count(r: &serde_json::Value, trigger: &str) -> u64 {
    r["reconciles"][trigger].as_u64().unwrap_or(0)
}

fn scrape(port: u16) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn drift_config_and_sighup_each_cause_exactly_one_reconcile() {
    let port = 19_000 + (std::process::id() % 1000) as u16;
    let config = format!(
        "{BASE_CONFIG}\n[daemon]\ndrift_interval_secs = 5\ndebounce_ms = 500\nmetrics_listen = \"127.0.0.1:{port}\"\n"
    );
    let root = common::fake_root(&config);
    let r = root.path();
    let first = reconcile(r, &SLOT2);
    assert_eq!(first.code, 0, "{}", first.stderr);

    let child = Command::new(common::BIN)
        .args(["daemon", "--root", r.to_str().unwrap()])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut daemon = Daemon(child);
    let rec = wait_for(r, "the start reconcile", |r| count(r, "start") == 1);
    assert_eq!(rec["last"]["result"], "converged", "{rec:#}");
    assert_eq!(rec["pid"], pid);
    assert!(rec["ready_ms"].as_u64().is_some());

    // A hand edit of a managed unit is put back by the next drift check, reported as corrective.
    let unit = r.join("etc/systemd/system/agentkeys-broker.service");
    let rendered = std::fs::read(&unit).unwrap();
    std::fs::write(&unit, b"[Service]\nExecStart=/bin/sh -c 'evil'\n").unwrap();
    let edited_at = Instant::now();
    let rec = wait_for(r, "a drift correction", |r| r["corrections"].as_u64().unwrap_or(0) >= 1);
    let took = edited_at.elapsed();
    assert_eq!(std::fs::read(&unit).unwrap(), rendered, "the unit is back byte-for-byte");
    assert_eq!(rec["last"]["trigger"], "drift");
    let corrective = rec["last"]["corrective"].as_array().unwrap();
    assert_eq!(corrective.len(), 1, "{rec:#}");
    assert!(corrective[0].as_str().unwrap().contains("agentkeys-broker.service"), "{rec:#}");
    assert!(took < Duration::from_secs(5 + 5), "corrected {took:?} after the edit (interval 5 s)");
    eprintln!("hand edit corrected {} ms after it was made", took.as_millis());

    // A burst of writes to the configuration (an editor's save) is exactly one reconcile.
    let before = count(&record(r), "config");
    let conf = r.join("etc/agentkeys/hostd.toml");
    for i in 0..5 {
        let mut text = std::fs::read_to_string(&conf).unwrap();
        text.push_str(&format!("# edit {i}\n"));
        std::fs::write(r.join("etc/agentkeys/.hostd.toml.swp"), "swap").unwrap();
        std::fs::write(&conf, text).unwrap();
        std::thread::sleep(Duration::from_millis(50));
    }
    wait_for(r, "the config reconcile", |rec| count(rec, "config") > before);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(count(&record(r), "config"), before + 1, "one reconcile for the burst");
    // Files hostd writes itself under /etc/agentkeys never trigger it.
    let envs_before = count(&record(r), "config");
    std::fs::write(r.join("etc/agentkeys/broker-sponsor.env.tmp-test"), "X=1\n").unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(count(&record(r), "config"), envs_before);

    // SIGHUP (systemctl reload) is one reconcile.
    let hups = count(&record(r), "reload");
    assert!(Command::new("kill").args(["-HUP", &pid.to_string()]).status().unwrap().success());
    wait_for(r, "the reload reconcile", |rec| count(rec, "reload") == hups + 1);

    // Metrics on loopback.
    let text = scrape(port);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    for want in [
        "agentkeys_hostd_up 1",
        "agentkeys_hostd_reconciles_total{trigger=\"reload\"} 1",
        "agentkeys_hostd_drift_corrections_total",
    ] {
        assert!(text.contains(want), "{want} missing in\n{text}");
    }

    // `status --json` carries the daemon's record.
    let status = common::run_in(r, &["status", "--root", r.to_str().unwrap(), "--json"]);
    assert_eq!(status.code, 0, "{}", status.stderr);
    assert_eq!(status.json()["daemon"]["pid"], pid);

    // SIGTERM: a clean exit, the record removed.
    assert!(Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap().success());
    let code = daemon.0.wait().unwrap();
    assert!(code.success(), "{code:?}");
    assert!(!r.join("run/agentkeys-hostd/daemon.json").exists());
}

#[test]
fn a_host_without_identity_idles_with_a_note() {
    let port = 20_000 + (std::process::id() % 1000) as u16;
    let root = common::fake_root(&format!("[daemon]\nmetrics_listen = \"127.0.0.1:{port}\"\n"));
    let r = root.path();
    let child = Command::new(common::BIN)
        .args(["daemon", "--root", r.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _daemon = Daemon(child);
    let rec = wait_for(r, "the idle note", |r| r["note"].as_str().is_some_and(|n| n.contains("no identity")));
    assert!(rec["failures"].as_object().unwrap().is_empty(), "{rec:#}");
    assert_eq!(rec["next_wake"]["trigger"], "drift");
    assert!(!r.join("etc/systemd/system/agentkeys-broker.service").exists(), "nothing rendered");
}
