//! Converging a real host: real systemd as PID 1 in a container, stand-in services, hostd driving
//! systemd over D-Bus. Minimal restarts, the health gate, crash recovery, the lock, adoption.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;

use common::container::Container;
use common::{ACCOUNT, BASE_CONFIG};

const DECLARE: [&str; 7] = ["--ci", "--slot", "2", "--zone", "litentry.org", "--account-id", ACCOUNT];

fn fresh() -> Container {
    let c = Container::boot(BASE_CONFIG);
    let run = c.reconcile(&DECLARE);
    assert_eq!(run.code, 0, "first converge: {}\n{}", run.stdout, run.stderr);
    c
}

fn all_green(run: &common::Run) {
    let s = run.json();
    assert_eq!(s["healthy"], 10, "{}", run.stdout);
    assert!(s.get("unhealthy").is_none(), "{}", run.stdout);
}

/// Restarted units (in order) from a run's `done:` lines.
fn restarted(run: &common::Run) -> Vec<String> {
    run.stdout
        .lines()
        .filter_map(|l| l.strip_prefix("done: restart ").or_else(|| l.strip_prefix("done: start ")))
        .map(|l| l.split(':').next().unwrap().trim_end_matches(".service").to_owned())
        .collect()
}

#[test]
fn the_standin_fixture_stands_in_for_every_catalog_binary() {
    let out = std::process::Command::new(common::container::standin()).arg("names").output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let names: Vec<String> = String::from_utf8(out.stdout).unwrap().lines().map(str::to_owned).collect();
    assert_eq!(names, common::service_binaries(), "tests/standin's NAMES against hostd's catalog");
}

fn secrets(c: &Container) -> BTreeMap<String, Option<Vec<u8>>> {
    common::SECRET_FILES.iter().map(|p| ((*p).to_owned(), std::fs::read(c.path(p)).ok())).collect()
}

#[test]
fn fresh_host_converges_green_and_a_rerun_touches_nothing() {
    let c = Container::boot(BASE_CONFIG);
    let run = c.reconcile(&DECLARE);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    all_green(&run);
    assert_eq!(restarted(&run), common::units(), "started in dependency order");
    let pids = c.main_pids();
    assert!(pids.values().all(|v| v.starts_with("active ")), "{pids:?}");
    let uid = c.exec(&["id", "-u", "agentkeys"]).stdout.trim().parse::<u32>().unwrap();
    for (path, mode, owner) in [
        ("/etc/agentkeys", 0o750, 0),
        ("/etc/agentkeys/dev-key-service.env", 0o600, uid),
        ("/etc/agentkeys/worker-creds.env", 0o600, uid),
        ("/var/lib/agentkeys", 0o700, uid),
        ("/var/lib/agentkeys/.agentkeys/broker", 0o700, uid),
        ("/var/lib/agentkeys/.agentkeys/broker/oidc-keypair.json", 0o600, uid),
        ("/var/lib/agentkeys/.agentkeys/broker/session-keypair.json", 0o600, uid),
        ("/var/lib/agentkeys/audit-leaves", 0o750, uid),
    ] {
        let m = std::fs::metadata(c.path(path)).unwrap();
        assert_eq!((m.mode() & 0o7777, m.uid()), (mode, owner), "{path}");
    }
    let before = secrets(&c);
    let again = c.reconcile(&[]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    let s = again.json();
    assert_eq!((s["result"].as_str(), s["changed"].as_u64()), (Some("converged"), Some(0)), "{}", again.stdout);
    assert!(s["restarts"].as_object().unwrap().is_empty());
    assert!(!again.stdout.contains("daemon-reload") && restarted(&again).is_empty(), "{}", again.stdout);
    all_green(&again);
    assert_eq!(s["ssm_agent"], "not installed", "the SSM agent's state is reported");
    assert_eq!(c.main_pids(), pids, "no unit was restarted");
    assert_eq!(secrets(&c), before);
    assert!(before.values().all(Option::is_some));
    // Each service journals under its unit's name, even those started through hostd's wrapper;
    // `journalctl -t agentkeys-hostd` holds hostd alone.
    let journal = |id: &str| c.exec(&["journalctl", "-q", "-o", "cat", "-t", id]).stdout;
    assert!(journal("agentkeys-worker-creds").contains("standin agentkeys-worker-creds listening"));
    assert!(!journal("agentkeys-hostd").contains("standin"), "{}", journal("agentkeys-hostd"));
}

#[test]
fn one_env_change_restarts_exactly_that_service_with_its_reason() {
    let c = fresh();
    let pids = c.main_pids();
    c.write(
        "/etc/agentkeys/hostd.d/50-email.toml",
        "[services.agentkeys-worker-email.environment]\nRUST_LOG = \"debug\"\n",
    );
    let run = c.reconcile(&[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(restarted(&run), ["agentkeys-worker-email"], "{}", run.stdout);
    let reasons = &run.json()["restarts"]["agentkeys-worker-email.service"];
    assert_eq!(reasons, &serde_json::json!(["worker-email.env changed"]));
    let after = c.main_pids();
    for (unit, state) in &pids {
        assert_eq!(
            after[unit] == *state,
            unit != "agentkeys-worker-email.service",
            "{unit}: {state} → {}",
            after[unit]
        );
    }
}

#[test]
fn a_new_broker_binary_restarts_the_broker_then_its_key_consumers() {
    let c = fresh();
    let pids = c.main_pids();
    common::bundle::write(
        &c.path("/root/release-b"),
        "2.0.0",
        "b0b0b0b0b0b0b0",
        &[("agentkeys-broker-server", b"\0release-b")],
    );
    let run = c.reconcile(&["--release", "/root/release-b"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.json()["release"], "2.0.0-b0b0b0b0b0b0");
    let order = restarted(&run);
    let consumers = [
        "agentkeys-signer",
        "agentkeys-worker-creds",
        "agentkeys-worker-memory",
        "agentkeys-worker-config",
        "agentkeys-worker-classify",
    ];
    assert_eq!(order[0], "agentkeys-broker", "{}", run.stdout);
    assert_eq!(order[1..], consumers, "{}", run.stdout);
    assert!(
        run.json()["restarts"]["agentkeys-broker.service"]
            .to_string()
            .contains("binary agentkeys-broker-server changed")
    );
    let after = c.main_pids();
    for unit in ["agentkeys-backend", "agentkeys-worker-audit", "agentkeys-worker-email", "agentkeys-bundler"] {
        let u = format!("{unit}.service");
        assert_eq!(after[&u], pids[&u], "{unit} must keep running");
    }
    all_green(&run);
}

#[test]
fn a_failing_service_fails_the_run_with_its_state_and_journal() {
    let c = fresh();
    std::fs::write(c.path("/opt/agentkeys/current/bin/agentkeys-worker-audit.fail-health"), "").unwrap();
    let run = c.reconcile(&[]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    let s = run.json();
    assert_eq!(s["result"], "failed");
    assert!(
        s["unhealthy"]["agentkeys-worker-audit.service"].as_str().unwrap().starts_with("/healthz answered HTTP 500")
    );
    assert!(run.stderr.contains("agentkeys-worker-audit.service failed its health check"), "{}", run.stderr);
    assert!(run.stderr.contains("ActiveState=active"), "{}", run.stderr);
    assert!(run.stderr.contains("last journal lines of agentkeys-worker-audit.service"), "{}", run.stderr);
    assert!(
        run.stderr.contains("standin agentkeys-worker-audit listening on 127.0.0.1:9092"),
        "journal tail: {}",
        run.stderr
    );
}

// Runs killed at every crash point: tests/crash_matrix.rs.

#[test]
fn concurrent_runs_queue_and_both_converge() {
    let c = Container::boot(BASE_CONFIG);
    let mut args = vec!["/usr/bin/agentkeys-hostd", "reconcile", "--no-acme", "--json"];
    args.extend(DECLARE);
    let a = c.spawn(&args, &[]);
    let b = c.spawn(&args, &[]);
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(a.status.success() && b.status.success(), "{a:?}\n{b:?}");
    let stderr = format!("{}{}", String::from_utf8_lossy(&a.stderr), String::from_utf8_lossy(&b.stderr));
    assert!(stderr.contains("queued: another converge"), "one run waited: {stderr}");
    for out in [&a, &b] {
        let first: serde_json::Value =
            serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().next().unwrap()).unwrap();
        assert!(matches!(first["result"].as_str(), Some("changed" | "converged")), "{first}");
    }
    assert_eq!(c.reconcile(&[]).json()["changed"], 0);
}

#[test]
fn an_old_script_host_is_adopted_with_every_secret_and_key_byte_identical() {
    let c = Container::boot(BASE_CONFIG);
    c.exec(&["groupadd", "--system", "agentkeys"]);
    c.exec(&[
        "useradd",
        "--system",
        "--gid",
        "agentkeys",
        "--home-dir",
        "/var/lib/agentkeys",
        "--shell",
        "/usr/sbin/nologin",
        "agentkeys",
    ]);
    let old = [
        ("/etc/agentkeys/dev-key-service.env", format!("DEV_KEY_SERVICE_MASTER_SECRET={}\n", "ab".repeat(32))),
        ("/etc/agentkeys/worker-creds.env", format!("WORKER_BIND=127.0.0.1:9094\nAGENTKEYS_WORKER_KEK_HEX={}\n", "c1c5".repeat(16))),
        ("/etc/agentkeys/worker-memory.env", format!("WORKER_BIND=127.0.0.1:9095\nAGENTKEYS_MEMORY_KEK_HEX={}\n", "c2c6".repeat(16))),
        ("/etc/agentkeys/worker-config.env", format!("WORKER_BIND=127.0.0.1:9096\nAGENTKEYS_CONFIG_KEK_HEX={}\n", "c3c7".repeat(16))),
        ("/var/lib/agentkeys/.agentkeys/broker/oidc-keypair.json", "{\"old\":\"oidc\"}\n".to_owned()),
        ("/var/lib/agentkeys/.agentkeys/broker/session-keypair.json", format!("{{\"old\":\"{}\"}}\n", "5e".repeat(32))),
        (
            "/etc/systemd/system/agentkeys-broker.service",
            "[Unit]\nDescription=broker (setup-broker-host.sh)\n[Service]\nUser=agentkeys\n\
             Environment=BROKER_OIDC_ISSUER=https://broker-test-3.litentry.org\nEnvironment=ACCOUNT_ID=429071895007\n\
             ExecStart=/usr/local/bin/agentkeys-broker-server --port 8091\nRestart=always\n[Install]\nWantedBy=multi-user.target\n"
                .to_owned(),
        ),
    ];
    for (p, text) in &old {
        c.write(p, text);
    }
    c.exec(&["chown", "-R", "agentkeys:agentkeys", "/var/lib/agentkeys"]);
    let run = c.reconcile(&[]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    all_green(&run);
    assert_eq!(run.json()["identity"]["issuer"], "https://broker-test-3.litentry.org");
    for (p, text) in &old[..1] {
        assert_eq!(c.read(p), text.as_bytes(), "{p} byte-identical");
    }
    for (p, text) in &old[4..6] {
        assert_eq!(c.read(p), text.as_bytes(), "{p} byte-identical");
    }
    for (p, text) in &old[1..4] {
        let kek = text.lines().nth(1).unwrap();
        assert!(String::from_utf8(c.read(p)).unwrap().contains(&format!("{kek}\n")), "{p} keeps {kek}");
    }
    let status = c.exec(&["/usr/bin/agentkeys-hostd", "status", "--json"]);
    assert_eq!(status.code, 0, "{}", status.stderr);
    let st: serde_json::Value = serde_json::from_str(status.stdout.lines().next().unwrap()).unwrap();
    assert_eq!(st["identity"]["issuer"], "https://broker-test-3.litentry.org");
    assert_eq!(st["last_run"]["result"], "changed");
    assert_eq!(st["services"]["agentkeys-broker.service"]["active_state"], "active");
}

#[test]
fn the_backend_and_signer_answer_only_loopback_clients() {
    let c = fresh();
    // A non-loopback address inside the container's own network namespace (the test created it).
    assert_eq!(c.exec(&["ip", "addr", "add", "10.231.0.1/32", "dev", "lo"]).code, 0);
    let connect = |addr: &str, port: u16| {
        let script = format!(
            "exec 3<>/dev/tcp/{addr}/{port} && printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 && head -c 12 <&3"
        );
        c.exec(&["timeout", "3", "bash", "-c", &script])
    };
    for port in [8090, 8092] {
        let local = connect("127.0.0.1", port);
        assert!(local.code == 0 && local.stdout.starts_with("HTTP/1.1 200"), "{port} from loopback: {local:?}");
        let outside = connect("10.231.0.1", port);
        assert_ne!(outside.code, 0, "port {port} answered a non-loopback client: {}", outside.stdout);
    }
    // The backend's socket really is on all interfaces: only systemd's IP filtering stops it. The
    // signer (--signer-only) binds loopback itself, as upstream's does.
    let ss = c.exec(&["ss", "-ltn"]).stdout;
    assert!(ss.contains("0.0.0.0:8090") && ss.contains("127.0.0.1:8092"), "{ss}");
}

#[test]
fn the_login_user_gets_sudo_keys_and_instance_connect_only_through_validation() {
    let c = Container::boot(BASE_CONFIG);
    let keys = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOpsTestKeyOnly ops@laptop\n";
    c.write("/home/ubuntu/.ssh/authorized_keys", keys);
    let run = c.reconcile(&DECLARE);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(c.exec(&["getent", "passwd", "agentkey"]).stdout.trim_end().ends_with(":/home/agentkey:/bin/bash"));
    let sudoers = std::fs::metadata(c.path("/etc/sudoers.d/agentkey")).unwrap();
    assert_eq!(sudoers.mode() & 0o7777, 0o440);
    assert_eq!(c.exec(&["visudo", "-c"]).code, 0);
    assert!(c.exec(&["sudo", "-l", "-U", "agentkey"]).stdout.contains("NOPASSWD: ALL"));
    let uid = c.exec(&["id", "-u", "agentkey"]).stdout.trim().parse::<u32>().unwrap();
    let ak = std::fs::metadata(c.path("/home/agentkey/.ssh/authorized_keys")).unwrap();
    assert_eq!((ak.mode() & 0o7777, ak.uid()), (0o600, uid));
    assert_eq!(c.read("/home/agentkey/.ssh/authorized_keys"), keys.as_bytes());
    assert_eq!(c.exec(&["sshd", "-t"]).code, 0);
    let eff = c.exec(&["sshd", "-T", "-C", "user=agentkey,host=h,addr=127.0.0.1"]).stdout;
    assert!(
        eff.contains("authorizedkeyscommand /usr/share/ec2-instance-connect/eic_run_authorized_keys %u %f"),
        "{eff}"
    );
    assert!(eff.contains("authorizedkeyscommanduser ec2-instance-connect"), "{eff}");
    // An operator's own key is never overwritten by the seed.
    c.write("/home/agentkey/.ssh/authorized_keys", "ssh-ed25519 AAAAmine me\n");
    assert_eq!(c.reconcile(&[]).json()["changed"], 0);
    assert_eq!(c.read("/home/agentkey/.ssh/authorized_keys"), b"ssh-ed25519 AAAAmine me\n");
}

#[test]
fn an_sshd_configuration_that_fails_sshd_t_is_rolled_back() {
    let c = Container::boot(BASE_CONFIG);
    c.write("/etc/ssh/sshd_config.d/10-broken.conf", "ThisIsNotAnOption yes\n");
    let run = c.reconcile(&DECLARE);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("sshd -t rejected /etc/ssh/sshd_config.d/60-agentkeys-ec2-instance-connect.conf"),
        "{}",
        run.stderr
    );
    assert!(
        !c.path("/etc/ssh/sshd_config.d/60-agentkeys-ec2-instance-connect.conf").exists(),
        "the candidate was removed"
    );
    std::fs::remove_file(c.path("/etc/ssh/sshd_config.d/10-broken.conf")).unwrap();
    let run = c.reconcile(&[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    all_green(&run);
}

#[test]
fn no_secret_value_reaches_the_journal_the_report_or_status() {
    let c = fresh();
    let run = c.reconcile(&[]);
    let mut secrets = c.env_secrets();
    let keypair = String::from_utf8(c.read("/var/lib/agentkeys/.agentkeys/broker/session-keypair.json")).unwrap();
    let private: String = keypair.split('"').find(|s| s.len() == 64).unwrap().to_owned();
    secrets.push(private);
    let journal = c.exec(&["journalctl", "-b", "--no-pager", "-o", "verbose"]).stdout;
    let report = String::from_utf8(c.read("/var/lib/agentkeys-hostd/last-report.json")).unwrap();
    let state = String::from_utf8(c.read("/var/lib/agentkeys-hostd/state.json")).unwrap();
    let status = c.exec(&["/usr/bin/agentkeys-hostd", "status", "--json"]).stdout;
    let dry = c.exec(&["/usr/bin/agentkeys-hostd", "reconcile", "--dry-run", "--json", "--no-acme"]).stdout;
    assert!(journal.len() > 1000, "the journal was read");
    for (name, text) in [
        ("journal", &journal),
        ("report", &report),
        ("state", &state),
        ("status", &status),
        ("dry run", &dry),
        ("run stdout", &run.stdout),
        ("run stderr", &run.stderr),
    ] {
        for s in &secrets {
            assert!(!text.contains(s.as_str()), "a secret value appears in the {name}");
        }
    }
}

#[test]
fn the_channel_worker_runs_when_the_release_ships_it() {
    let c = Container::boot(BASE_CONFIG);
    c.ship_all_binaries();
    let run = c.reconcile(&DECLARE);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    // Every service but those waiting for operator inputs (none given here; tests/optional_services.rs).
    let no_inputs = hostd::decide::catalog::SERVICES.iter().filter(|s| s.inputs.is_empty()).count();
    assert_eq!(run.json()["healthy"], no_inputs, "{}", run.stdout);
    assert_eq!(run.json()["waiting"].as_object().map(serde_json::Map::len), Some(3), "{}", run.stdout);
    let state = c.exec(&["systemctl", "is-active", "agentkeys-worker-channel.service"]).stdout;
    assert_eq!(state.trim(), "active");
    let broker = String::from_utf8(c.read("/etc/systemd/system/agentkeys-broker.service")).unwrap();
    assert!(broker.contains("Environment=AGENTKEYS_WORKER_CHANNEL_URL=http://127.0.0.1:9099\n"), "{broker}");
    // The shared bearer reaches both services, and only through the 0600 file.
    let token = String::from_utf8(c.read("/etc/agentkeys/channel-sts.env")).unwrap();
    assert!(token.contains("AGENTKEYS_CHANNEL_STS_TOKEN="), "{token}");
    assert_eq!(std::fs::metadata(c.path("/etc/agentkeys/channel-sts.env")).unwrap().mode() & 0o777, 0o600);
    let again = c.reconcile(&[]);
    assert!(again.stdout.contains(" 0 changed") && again.stdout.contains("0 (re)started"), "{}", again.stdout);

    // Switched off: stopped, its unit, enablement and vhost removed; the broker restarts (its unit
    // no longer points at the worker) with its key consumers, nothing else.
    let pids = c.main_pids();
    c.write("/etc/agentkeys/hostd.d/50-channel.toml", "[services.agentkeys-worker-channel]\nenabled = false\n");
    let off = c.reconcile(&[]);
    assert_eq!(off.code, 0, "{}\n{}", off.stdout, off.stderr);
    assert!(off.stdout.contains("done: stop agentkeys-worker-channel.service"), "{}", off.stdout);
    assert_eq!(off.json()["healthy"], 10, "{}", off.stdout);
    let state =
        c.exec(&["systemctl", "show", "-p", "ActiveState,LoadState", "agentkeys-worker-channel.service"]).stdout;
    assert!(state.contains("ActiveState=inactive") && state.contains("LoadState=not-found"), "{state}");
    assert!(!c.path("/etc/nginx/sites-enabled/channel-test-2.litentry.org.conf").exists());
    assert!(c.path("/etc/agentkeys/worker-channel.env").exists(), "the KEK stays");
    let after = c.main_pids();
    for unit in ["agentkeys-backend", "agentkeys-worker-audit", "agentkeys-worker-email", "agentkeys-bundler"] {
        let unit = format!("{unit}.service");
        assert_eq!(after[&unit], pids[&unit], "{unit} was not restarted");
    }
    assert_ne!(after["agentkeys-broker.service"], pids["agentkeys-broker.service"], "the broker's unit changed");
    let broker = String::from_utf8(c.read("/etc/systemd/system/agentkeys-broker.service")).unwrap();
    assert!(!broker.contains("AGENTKEYS_WORKER_CHANNEL_URL"), "{broker}");
    assert!(c.reconcile(&[]).stdout.contains(" 0 changed"), "then converged");
}
