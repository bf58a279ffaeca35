//! The .deb on a real-systemd host: install → daemon active and READY → converge → the daemon
//! renews a short-lived certificate at its renewal time (no reconcile call), applies a config edit
//! with exactly one reconcile, corrects a hand-edited unit within the drift interval → doctor and
//! metrics → upgrade to a rebuilt package → remove → purge, each step checked.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::container::Container;
use common::deb::package;
use common::in_container::{ACME, in_netns, installed_serial, served_serial, start_pebble_with};
use common::{ACCOUNT, BASE_CONFIG};

/// Seconds since the test started, for the step log.
fn step(t0: Instant, what: &str) {
    eprintln!("[{:6.1} s] {what}", t0.elapsed().as_secs_f64());
}

fn daemon_record(c: &Container) -> serde_json::Value {
    let text = std::fs::read_to_string(c.path("/run/agentkeys-hostd/daemon.json")).unwrap_or_default();
    serde_json::from_str(&text).unwrap_or(serde_json::Value::Null)
}

fn wait_for(c: &Container, what: &str, secs: u64, ok: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let r = daemon_record(c);
        if ok(&r) {
            return r;
        }
        if Instant::now() >= deadline {
            let journal = c.exec(&["journalctl", "-u", "agentkeys-hostd", "--no-pager", "-n", "40"]).stdout;
            panic!("timed out after {secs} s waiting for {what}; record: {r:#}\njournal:\n{journal}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn count(r: &serde_json::Value, trigger: &str) -> u64 {
    r["reconciles"][trigger].as_u64().unwrap_or(0)
}

fn show(c: &Container, unit: &str, prop: &str) -> String {
    c.exec(&["systemctl", "show", "-p", prop, "--value", unit]).stdout.trim().to_owned()
}

fn dpkg(c: &Container, args: &[&str]) {
    let mut all = vec!["dpkg", "--force-confdef", "--force-confold"];
    all.extend_from_slice(args);
    let r = c.exec(&all);
    assert_eq!(r.code, 0, "dpkg {args:?}:\n{}\n{}", r.stdout, r.stderr);
}

/// Edit hostd.toml as an operator's editor would (write a new file, rename over).
fn edit_config(c: &Container, edit: impl FnOnce(String) -> String) {
    let text = edit(String::from_utf8(c.read("/etc/agentkeys/hostd.toml")).unwrap());
    c.write("/etc/agentkeys/hostd.toml.tmp", &text);
    std::fs::rename(c.path("/etc/agentkeys/hostd.toml.tmp"), c.path("/etc/agentkeys/hostd.toml")).unwrap();
}

#[test]
fn install_converge_renew_drift_upgrade_remove_purge() {
    let t0 = Instant::now();
    let first = package("AGENTKEYS_DEB", None);
    let second = package("AGENTKEYS_DEB_UPGRADE", Some("0.1.0-2"));
    let c =
        Container::boot(&format!("{BASE_CONFIG}\n{ACME}\n[daemon]\ndrift_interval_secs = 3600\ndebounce_ms = 300\n"));
    let dir = tempfile::tempdir().unwrap();
    // Short-lived certificates: 60 s, so the renewal time (half the lifetime) comes within the test.
    start_pebble_with(&c, dir.path(), 80, Some(60));

    step(t0, "install");
    // Install: the daemon is enabled, active and READY (Type=notify: active only after READY=1).
    c.install(first.to_str().unwrap(), "/tmp/agentkeys-hostd.deb");
    let started = Instant::now();
    dpkg(&c, &["-i", "/tmp/agentkeys-hostd.deb"]);
    eprintln!("dpkg -i took {} ms", started.elapsed().as_millis());
    assert_eq!(show(&c, "agentkeys-hostd.service", "ActiveState"), "active");
    assert_eq!(show(&c, "agentkeys-hostd.service", "UnitFileState"), "enabled");
    assert_eq!(show(&c, "agentkeys-hostd.service", "Type"), "notify");
    let rec = wait_for(&c, "the idle note", 20, |r| r["note"].as_str().is_some_and(|n| n.contains("no identity")));
    assert!(rec["ready_ms"].as_u64().is_some(), "{rec:#}");
    assert!(show(&c, "agentkeys-hostd.service", "StatusText").starts_with("idle; next: drift"));
    let daemon_pid = rec["pid"].as_u64().unwrap();
    assert_eq!(show(&c, "agentkeys-hostd.service", "MainPID"), daemon_pid.to_string());
    for (path, mode) in [("/usr/bin/agentkeys-hostd", 0o755), ("/lib/systemd/system/agentkeys-hostd.service", 0o644)] {
        use std::os::unix::fs::PermissionsExt;
        let m = std::fs::metadata(c.path(path)).unwrap().permissions().mode() & 0o777;
        assert_eq!(m, mode, "{path}");
    }
    assert!(c.path("/usr/share/man/man1/agentkeys-hostd.1.gz").exists());
    assert!(c.path("/usr/share/bash-completion/completions/agentkeys-hostd").exists());

    step(t0, "converge");
    // Converge from the command line (as SSM would), certificates included.
    let run = c.reconcile_acme(&["--ci", "--slot", "2", "--zone", "litentry.org", "--account-id", ACCOUNT]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let broker = "broker-test-2.litentry.org";
    let issued_serial = installed_serial(&c, broker);
    let issued_at = Instant::now();
    // The daemon learns the new renewal times from the state directory (no reconcile of its own).
    let rec = wait_for(&c, "the renewal schedule", 20, |r| r["hosts"].as_array().is_some_and(|h| h.len() == 8));
    assert_eq!(rec["next_wake"]["trigger"], "renewal", "{rec:#}");
    assert_eq!(count(&rec, "renewal"), 0);

    step(t0, "config edit");
    // A config edit (an editor's write + rename) is exactly one reconcile; the drift interval drops to 5 s.
    let before = count(&daemon_record(&c), "config");
    edit_config(&c, |t| t + "\n# edited\n");
    std::fs::write(c.path("/etc/agentkeys/hostd.d-not-config"), "x").unwrap();
    edit_config(&c, |t| t + "# drift check every 5 s for this test\n");
    edit_config(&c, |t| t.replace("drift_interval_secs = 3600", "drift_interval_secs = 5"));
    wait_for(&c, "the config reconcile", 20, |r| count(r, "config") > before);
    std::thread::sleep(Duration::from_secs(2));
    let configs = count(&daemon_record(&c), "config") - before;
    assert_eq!(configs, 1, "a burst of 3 writes is one reconcile");

    step(t0, "hand edit");
    // A hand edit of a managed unit is corrected within the drift interval, reported as corrective.
    let unit = "/etc/systemd/system/agentkeys-worker-email.service";
    let rendered = c.read(unit);
    c.write(unit, &String::from_utf8(rendered.clone()).unwrap().replace("Restart=on-failure", "Restart=no"));
    let edited = Instant::now();
    let rec = wait_for(&c, "the drift correction", 20, |r| r["corrections"].as_u64().unwrap_or(0) >= 1);
    let took = edited.elapsed();
    assert_eq!(c.read(unit), rendered, "{unit} back byte-for-byte");
    assert!(rec["last"]["corrective"].to_string().contains("agentkeys-worker-email.service"), "{rec:#}");
    assert!(took < Duration::from_secs(12), "corrected after {took:?} (drift interval 5 s)");
    eprintln!("hand edit corrected after {} ms", took.as_millis());
    // Back to a long drift interval, so the renewal below is the renewal trigger's own.
    edit_config(&c, |t| t.replace("drift_interval_secs = 5", "drift_interval_secs = 3600"));

    step(t0, "renewal");
    // The renewal time arrives: the daemon renews and nginx serves the new certificate.
    let deadline = Instant::now() + Duration::from_secs(90);
    while installed_serial(&c, broker) == issued_serial {
        assert!(Instant::now() < deadline, "{broker} not renewed within 90 s: {:#}", daemon_record(&c));
        std::thread::sleep(Duration::from_millis(200));
    }
    let rec = wait_for(&c, "the renewal run's end", 30, |r| r["last"]["trigger"] == "renewal");
    assert_eq!(count(&rec, "drift"), 1, "renewed by the renewal trigger, not a drift check: {rec:#}");
    eprintln!("renewed {} s after issuance (lifetime 60 s)", issued_at.elapsed().as_secs());
    let root = dir.path().join("issuing-root.pem");
    let ca = dir.path().join("ca.pem");
    let out = in_netns(&c, &["curl", "-sf", "--cacert", ca.to_str().unwrap(), "https://127.0.0.1:15000/roots/0"]);
    std::fs::write(&root, &out.stdout).unwrap();
    // The run that installed it reloads nginx before it ends: nginx serves what is installed.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (served, installed) = (served_serial(&c, broker, &root), installed_serial(&c, broker));
        if served == installed {
            assert_ne!(served, issued_serial, "nginx serves the renewed certificate");
            break;
        }
        assert!(Instant::now() < deadline, "nginx serves {served}, installed is {installed}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let rec = wait_for(&c, "a renewal run's end", 30, |r| r["last"]["trigger"] == "renewal");
    assert_eq!(rec["last"]["exit_code"], 0, "{rec:#}");

    // status --json carries the daemon's record and every host's renewal time and why.
    let status = c.exec(&["agentkeys-hostd", "status", "--json"]);
    assert_eq!(status.code, 0, "{}", status.stderr);
    let st = status.json();
    assert_eq!(st["daemon"]["pid"], daemon_pid);
    let renewals = st["renewals"].as_array().unwrap();
    assert!(renewals.iter().all(|h| h["renew_why"].as_str().is_some_and(|w| w.contains("1/2"))), "{renewals:?}");

    step(t0, "doctor");
    // doctor: every pre-flight check passes on this converged host; the escrow, switched off in
    // this test's configuration (no AWS here), warns as it does on every run of such a host.
    let doctor = c.exec(&["agentkeys-hostd", "doctor", "--json"]);
    let d = doctor.json();
    for check in d["checks"].as_array().unwrap() {
        let expected = if check["name"] == "escrow" { "warn" } else { "pass" };
        assert_eq!(check["verdict"], expected, "{check}");
    }
    assert_eq!(doctor.code, 0);

    step(t0, "metrics");
    // Metrics on loopback inside the host.
    let scrape = "exec 3<>/dev/tcp/127.0.0.1/9464; printf 'GET /metrics HTTP/1.0\\r\\n\\r\\n' >&3; cat <&3";
    let metrics = c.exec(&["bash", "-c", scrape]).stdout;
    for want in [
        format!("agentkeys_hostd_certificate_not_after_seconds{{host=\"{broker}\"}}"),
        "agentkeys_hostd_reconciles_total{trigger=\"renewal\"}".to_owned(),
        "agentkeys_hostd_unit_active{unit=\"agentkeys-broker.service\",state=\"active\"} 1".to_owned(),
        "agentkeys_hostd_last_reconcile_duration_seconds".to_owned(),
    ] {
        assert!(metrics.contains(&want), "{want} missing:\n{metrics}");
    }

    step(t0, "upgrade");
    // Upgrade to a rebuilt package: the daemon restarts on the new binary, the services do not.
    let services = c.main_pids();
    c.install(second.to_str().unwrap(), "/tmp/agentkeys-hostd-2.deb");
    dpkg(&c, &["-i", "/tmp/agentkeys-hostd-2.deb"]);
    let version = c.exec(&["dpkg-query", "-W", "-f", "${Version}", "agentkeys-hostd"]).stdout;
    assert_eq!(version, "0.1.0-2");
    assert_eq!(show(&c, "agentkeys-hostd.service", "ActiveState"), "active");
    assert_ne!(show(&c, "agentkeys-hostd.service", "MainPID"), daemon_pid.to_string(), "restarted");
    assert!(String::from_utf8(c.read("/etc/agentkeys/hostd.toml")).unwrap().contains("# edited"), "conffile kept");
    std::thread::sleep(Duration::from_secs(2));
    let after = c.main_pids();
    for (unit, pid) in &services {
        if unit != "agentkeys-hostd.service" {
            assert_eq!(after.get(unit), Some(pid), "{unit} untouched by the upgrade");
        }
    }

    step(t0, "remove");
    // Remove: the daemon and its files go; configuration, state and the services stay.
    dpkg(&c, &["-r", "agentkeys-hostd"]);
    assert!(!c.path("/usr/bin/agentkeys-hostd").exists());
    assert!(!c.path("/lib/systemd/system/agentkeys-hostd.service").exists());
    assert_ne!(show(&c, "agentkeys-hostd.service", "ActiveState"), "active");
    assert!(c.path("/etc/agentkeys/hostd.toml").exists(), "conffile kept on remove");
    assert!(c.path("/var/lib/agentkeys-hostd/state.json").exists());
    assert_eq!(show(&c, "agentkeys-broker.service", "ActiveState"), "active", "services keep running");

    step(t0, "purge");
    // Purge: the conffile and hostd's bookkeeping go; the identity record and certificates stay.
    dpkg(&c, &["-P", "agentkeys-hostd"]);
    assert!(!c.path("/etc/agentkeys/hostd.toml").exists(), "conffile removed on purge");
    assert!(!c.path("/var/lib/agentkeys-hostd/state.json").exists());
    assert!(c.path("/var/lib/agentkeys-hostd/identity.json").exists(), "the cross-wire guard survives a purge");
    assert!(c.path(&format!("/var/lib/agentkeys-hostd/tls/{broker}/current/fullchain.pem")).exists());
    let status = c.exec(&["dpkg-query", "-W", "-f", "${Status}", "agentkeys-hostd"]);
    assert!(status.code != 0 || status.stdout.contains("not-installed"), "{status:?}");
}
