//! `reconcile --root`: converges a fake root atomically and idempotently, restores exactly what
//! was lost, keeps secrets byte-for-byte, and `--dry-run` writes nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::{ACCOUNT, BASE_CONFIG, assert_same, reconcile, snapshot};

const SLOT3: [&str; 7] = ["--ci", "--slot", "3", "--zone", "litentry.org", "--account-id", ACCOUNT];

fn meta(root: &Path, p: &str) -> (u32, u32, u32) {
    let m = std::fs::symlink_metadata(root.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    (m.mode() & 0o7777, m.uid(), m.gid())
}

#[test]
fn fresh_root_gets_the_spec_modes_and_owners_and_a_rerun_writes_nothing() {
    let root = common::fake_root(BASE_CONFIG);
    let r = root.path();
    let mut args = SLOT3.to_vec();
    args.push("--json");
    let first = reconcile(r, &args);
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert_eq!(first.json()["result"], "changed");
    let passwd = std::fs::read_to_string(r.join("etc/passwd")).unwrap();
    let uid: u32 =
        passwd.lines().find(|l| l.starts_with("agentkeys:")).unwrap().split(':').nth(2).unwrap().parse().unwrap();
    let gid: u32 = std::fs::read_to_string(r.join("etc/group"))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("agentkeys:"))
        .unwrap()
        .split(':')
        .nth(2)
        .unwrap()
        .parse()
        .unwrap();
    for (path, want) in [
        ("etc/agentkeys", (0o750, 0, gid)),
        ("var/lib/agentkeys", (0o700, uid, gid)),
        ("var/lib/agentkeys/.agentkeys/broker", (0o700, uid, gid)),
        ("var/lib/agentkeys/audit-leaves", (0o750, uid, gid)),
        ("etc/agentkeys/dev-key-service.env", (0o600, uid, gid)),
        ("etc/agentkeys/worker-creds.env", (0o600, uid, gid)),
        ("etc/agentkeys/worker-memory.env", (0o600, uid, gid)),
        ("etc/agentkeys/worker-config.env", (0o600, uid, gid)),
        ("etc/agentkeys/worker-email.env", (0o640, 0, gid)),
        ("etc/systemd/system/agentkeys-broker.service", (0o644, 0, 0)),
    ] {
        assert_eq!(meta(r, path), want, "{path}");
    }
    let secret = std::fs::read_to_string(r.join("etc/agentkeys/dev-key-service.env")).unwrap();
    let value = secret.lines().find_map(|l| l.strip_prefix("DEV_KEY_SERVICE_MASTER_SECRET=")).unwrap();
    assert!(value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    let before = snapshot(r);
    for extra in [vec![], vec!["--ci"], vec!["--ci", "--slot", "3"]] {
        let mut a = extra.clone();
        a.push("--json");
        let again = reconcile(r, &a);
        assert_eq!(again.code, 0, "{}", again.stderr);
        let s = again.json();
        assert_eq!(
            (s["result"].as_str(), s["changed"].as_u64()),
            (Some("converged"), Some(0)),
            "{extra:?}: {}",
            again.stdout
        );
        assert!(again.stdout.contains("converged: 0 changed"));
        assert_same(&before, &snapshot(r), "re-run on a converged root");
    }
    let plan = common::run_in(r, &["reconcile", "--root", r.to_str().unwrap(), "--dry-run"]);
    assert_eq!(plan.stdout.trim(), "nothing to do: the host is converged", "{}", plan.stderr);
}

#[test]
fn deleting_one_file_restores_exactly_that_file() {
    let root = common::fake_root(BASE_CONFIG);
    let r = root.path();
    assert_eq!(reconcile(r, &SLOT3).code, 0);
    for victim in [
        "etc/agentkeys/worker-email.env",
        "etc/systemd/system/agentkeys-signer.service",
        "etc/nginx/sites-enabled/memory-test-3.litentry.org.conf",
    ] {
        let before = snapshot(r);
        std::fs::remove_file(r.join(victim)).unwrap();
        let plan = common::run_in(r, &["reconcile", "--root", r.to_str().unwrap(), "--dry-run", "--no-systemd"]);
        let lines: Vec<&str> = plan.stdout.lines().collect();
        assert_eq!(lines.len(), 1, "{victim}: {}", plan.stdout);
        assert!(lines[0].contains(&format!("/{victim}")) && lines[0].starts_with("  1. create"), "{}", lines[0]);
        let run = reconcile(r, &["--json"]);
        let s = run.json();
        assert_eq!(s["changed"], 1, "{}", run.stdout);
        let done: Vec<&str> = run.stdout.lines().filter(|l| l.starts_with("done: ")).collect();
        assert_eq!(done.len(), 1, "{}", run.stdout);
        assert!(done[0].contains(&format!("/{victim}")), "{}", done[0]);
        let after = snapshot(r);
        for (p, snap) in &after {
            let old = &before[p];
            if p == Path::new(victim) {
                assert_eq!(
                    (old.content.clone(), old.mode),
                    (snap.content.clone(), snap.mode),
                    "{victim} restored identically"
                );
            } else if p == Path::new("var/lib/agentkeys-hostd")
                || p == Path::new("var/lib/agentkeys-hostd/state.json")
                || p == Path::new("var/lib/agentkeys-hostd/last-report.json")
            {
                // hostd's record (state, full report) of the run that restored the file.
            } else if Some(p.as_path()) == Path::new(victim).parent() {
                // Creating an entry updates its directory's mtime; nothing else may change.
                assert_eq!((old.mode, old.uid, old.gid, old.ino), (snap.mode, snap.uid, snap.gid, snap.ino));
            } else {
                assert_eq!(old, snap, "{} must not be touched while restoring {victim}", p.display());
            }
        }
    }
}

#[test]
fn drift_in_mode_or_content_is_corrected_and_reported() {
    let root = common::fake_root(BASE_CONFIG);
    let r = root.path();
    assert_eq!(reconcile(r, &SLOT3).code, 0);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(r.join("etc/agentkeys/worker-creds.env"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let unit = r.join("etc/systemd/system/agentkeys-worker-audit.service");
    std::fs::write(&unit, std::fs::read_to_string(&unit).unwrap().replace("Restart=on-failure", "Restart=no")).unwrap();
    let plan = common::run_in(r, &["reconcile", "--root", r.to_str().unwrap(), "--dry-run"]);
    assert!(
        plan.stdout
            .contains("fix secret file /etc/agentkeys/worker-creds.env (0600 agentkeys:agentkeys): mode 0644 -> 0600"),
        "{}",
        plan.stdout
    );
    assert!(plan.stdout.contains("update unit /etc/systemd/system/agentkeys-worker-audit.service"), "{}", plan.stdout);
    assert_eq!(
        plan.stdout.lines().count(),
        2,
        "nothing else (restart reasons: planner and container tests): {}",
        plan.stdout
    );
    assert_eq!(reconcile(r, &[]).code, 0);
    assert_eq!(meta(r, "etc/agentkeys/worker-creds.env").0, 0o600);
    assert_eq!(reconcile(r, &["--json"]).json()["changed"], 0);
}

#[test]
fn existing_secrets_are_kept_and_malformed_ones_stop_the_run_before_any_write() {
    let root = common::fake_root(BASE_CONFIG);
    let r = root.path();
    let master = format!("# written by setup-broker-host.sh\nDEV_KEY_SERVICE_MASTER_SECRET={}\n", "0a".repeat(32));
    std::fs::write(r.join("etc/agentkeys/dev-key-service.env"), &master).unwrap();
    std::fs::write(
        r.join("etc/agentkeys/worker-memory.env"),
        format!("WORKER_BIND=x\nAGENTKEYS_MEMORY_KEK_HEX={}\n", "5c5d".repeat(16)),
    )
    .unwrap();
    let run = reconcile(r, &[&SLOT3[..], &["--json"]].concat());
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.json()["secrets_generated"], serde_json::json!(["AGENTKEYS_WORKER_KEK_HEX"]));
    assert_eq!(std::fs::read_to_string(r.join("etc/agentkeys/dev-key-service.env")).unwrap(), master, "byte-for-byte");
    assert!(
        std::fs::read_to_string(r.join("etc/agentkeys/worker-memory.env"))
            .unwrap()
            .contains(&format!("AGENTKEYS_MEMORY_KEK_HEX={}\n", "5c5d".repeat(16)))
    );
    let creds = std::fs::read_to_string(r.join("etc/agentkeys/worker-creds.env")).unwrap();
    assert_eq!(reconcile(r, &[]).code, 0);
    assert_eq!(
        std::fs::read_to_string(r.join("etc/agentkeys/worker-creds.env")).unwrap(),
        creds,
        "generated once, then kept"
    );

    let bad = format!("AGENTKEYS_CONFIG_KEK_HEX={}\n", "XY".repeat(32));
    std::fs::write(r.join("etc/agentkeys/worker-config.env"), &bad).unwrap();
    std::fs::remove_file(r.join("etc/systemd/system/agentkeys-broker.service")).unwrap();
    let before = snapshot(r);
    let run = reconcile(r, &[]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("/etc/agentkeys/worker-config.env") && run.stderr.contains("AGENTKEYS_CONFIG_KEK_HEX"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains(&"XY".repeat(32)), "the bad value is not echoed");
    assert_same(&before, &snapshot(r), "a malformed secret stops the run before anything is written");

    // A KEK of one repeated byte is what the real workers refuse at start: stopped here, not looped.
    let placeholder = format!("AGENTKEYS_MEMORY_KEK_HEX={}\n", "5c".repeat(32));
    std::fs::write(r.join("etc/agentkeys/worker-memory.env"), &placeholder).unwrap();
    std::fs::remove_file(r.join("etc/agentkeys/worker-config.env")).unwrap();
    let before = snapshot(r);
    let run = reconcile(r, &[]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("worker-memory.env") && run.stderr.contains("placeholder"), "{}", run.stderr);
    assert!(!run.stderr.contains(&"5c".repeat(32)), "the value is not echoed");
    assert_same(&before, &snapshot(r), "a placeholder KEK stops the run before anything is written");
}

#[test]
fn dry_run_writes_nothing_and_prints_the_plan() {
    let root = common::fake_root(BASE_CONFIG);
    let r = root.path();
    let before = snapshot(r);
    let mut args = vec!["reconcile", "--root", r.to_str().unwrap(), "--dry-run", "--json"];
    args.extend(SLOT3);
    let run = common::run_in(r, &args);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.json()["result"], "planned");
    assert!(run.stdout.contains("create system user agentkeys"));
    assert!(run.stdout.contains("create unit /etc/systemd/system/agentkeys-broker.service"));
    assert!(!run.stdout.contains("daemon-reload"), "systemd is not queried under another root");
    assert_same(&before, &snapshot(r), "dry run");
    assert!(!r.join("run").exists(), "not even the lock is taken");
}

#[test]
fn impossible_combinations_are_refused_up_front() {
    let root = common::fake_root(BASE_CONFIG);
    let r = root.path();
    let before = snapshot(r);
    for (extra, flag) in [(vec![], "--root"), (vec!["--no-acme"], "--root"), (vec!["--no-systemd"], "--no-acme")] {
        let mut args = vec!["reconcile", "--root", r.to_str().unwrap()];
        args.extend(SLOT3);
        args.extend(extra);
        let run = common::run_in(r, &args);
        assert_eq!(run.code, 2);
        assert!(run.stderr.contains(&format!("invalid input: {flag}")), "{}", run.stderr);
        assert_same(&before, &snapshot(r), "refused run");
    }
}

#[test]
fn env_file_command_substitution_never_runs() {
    let root = common::fake_root(BASE_CONFIG);
    let r = root.path();
    let canary = r.join("canary");
    let env = r.join("operator.env");
    for line in [
        format!("ZONE=$(touch {})", canary.display()),
        format!("ZONE=\"`touch {}`\"", canary.display()),
        format!("ZONE=x; touch {}", canary.display()),
    ] {
        std::fs::write(&env, format!("ACCOUNT_ID={ACCOUNT}\n{line}\n")).unwrap();
        let run = reconcile(r, &["--env-file", env.to_str().unwrap()]);
        assert_eq!(run.code, 2, "{line}: {}", run.stderr);
        assert!(run.stderr.contains(&format!("{}:2: ZONE", env.display())), "{}", run.stderr);
        assert!(!canary.exists(), "{line} was executed");
    }
}

#[test]
fn a_run_that_cannot_get_the_lock_in_time_exits_75() {
    let root = common::fake_root(BASE_CONFIG);
    let r = root.path();
    assert_eq!(reconcile(r, &SLOT3).code, 0);
    let lock = std::fs::OpenOptions::new().write(true).open(r.join("run/agentkeys-hostd.lock")).unwrap();
    lock.lock().unwrap();
    let t = std::time::Instant::now();
    let run = reconcile(r, &["--lock-wait-secs", "1"]);
    assert_eq!(run.code, 75, "{}", run.stderr);
    assert!(run.stderr.contains("queued: another converge"), "{}", run.stderr);
    assert!(run.stderr.contains("still holds") && run.stderr.contains("--lock-wait"), "{}", run.stderr);
    assert!(t.elapsed() < std::time::Duration::from_secs(10), "bounded wait");
    lock.unlock().unwrap();
    assert_eq!(reconcile(r, &[]).code, 0, "free again");
}

#[test]
fn template_overrides_apply_and_unknown_or_broken_ones_are_refused() {
    let root = common::fake_root(BASE_CONFIG);
    let r = root.path();
    std::fs::create_dir_all(r.join("etc/agentkeys/templates")).unwrap();
    let env = include_str!("../templates/env-file.env.tera")
        .replace("# Managed by agentkeys-hostd", "# Managed by agentkeys-hostd (site override)");
    std::fs::write(r.join("etc/agentkeys/templates/env-file.env.tera"), env).unwrap();
    assert_eq!(reconcile(r, &SLOT3).code, 0);
    assert!(std::fs::read_to_string(r.join("etc/agentkeys/worker-email.env")).unwrap().contains("(site override)"));
    let before = snapshot(r);
    std::fs::write(r.join("etc/agentkeys/templates/vhost.tera"), "x").unwrap();
    let run = reconcile(r, &[]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("/etc/agentkeys/templates/vhost.tera") && run.stderr.contains("nginx-vhost.conf.tera"),
        "{}",
        run.stderr
    );
    std::fs::remove_file(r.join("etc/agentkeys/templates/vhost.tera")).unwrap();
    std::fs::write(r.join("etc/agentkeys/templates/nginx-vhost.conf.tera"), "{% if %}").unwrap();
    let run = reconcile(r, &[]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("/etc/agentkeys/templates/nginx-vhost.conf.tera"), "{}", run.stderr);
    std::fs::remove_file(r.join("etc/agentkeys/templates/nginx-vhost.conf.tera")).unwrap();
    let after = snapshot(r);
    for (p, s) in &after {
        if !p.starts_with("etc/agentkeys/templates") {
            assert_eq!(before.get(p), Some(s), "{}", p.display());
        }
    }
}

#[test]
fn the_channel_worker_runs_only_where_its_binary_ships_and_is_not_switched_off() {
    let root = common::fake_root(&format!("{BASE_CONFIG}[paths]\nbin_dir = \"/usr/local/bin\"\n"));
    let r = root.path();
    let unit = r.join("etc/systemd/system/agentkeys-worker-channel.service");
    assert_eq!(reconcile(r, &SLOT3).code, 0);
    assert!(!unit.exists(), "no binary, no unit");
    let broker = std::fs::read_to_string(r.join("etc/systemd/system/agentkeys-broker.service")).unwrap();
    assert!(
        !broker.contains("AGENTKEYS_WORKER_CHANNEL_URL"),
        "the broker is not pointed at a worker that is not there"
    );

    std::fs::create_dir_all(r.join("usr/local/bin")).unwrap();
    std::fs::write(r.join("usr/local/bin/agentkeys-worker-channel"), "binary").unwrap();
    let run = reconcile(r, &["--json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(unit.exists(), "the release ships it: it runs");
    let generated = run.json()["secrets_generated"].to_string();
    assert!(
        generated.contains("AGENTKEYS_CHANNEL_KEK_HEX") && generated.contains("AGENTKEYS_CHANNEL_STS_TOKEN"),
        "{generated}"
    );
    let token = std::fs::read_to_string(r.join("etc/agentkeys/channel-sts.env")).unwrap();
    assert_eq!(meta(r, "etc/agentkeys/channel-sts.env").0 & 0o777, 0o600, "a secret");
    let broker = std::fs::read_to_string(r.join("etc/systemd/system/agentkeys-broker.service")).unwrap();
    assert!(broker.contains("Environment=AGENTKEYS_WORKER_CHANNEL_URL=http://127.0.0.1:9099\n"), "{broker}");
    assert!(!broker.contains("AGENTKEYS_CHANNEL_STS_TOKEN"), "the token never sits in the world-readable unit");
    assert!(r.join("etc/nginx/sites-available/channel-test-3.litentry.org.conf").exists());

    // Switched off in configuration: its unit and vhost go; the KEK's env file and the token stay
    // (data may be encrypted with the KEK; both are secrets hostd never regenerates).
    let kek = std::fs::read_to_string(r.join("etc/agentkeys/worker-channel.env")).unwrap();
    let config = std::fs::read_to_string(r.join("etc/agentkeys/hostd.toml")).unwrap();
    std::fs::write(
        r.join("etc/agentkeys/hostd.toml"),
        format!("{config}[services.agentkeys-worker-channel]\nenabled = false\n"),
    )
    .unwrap();
    let run = reconcile(r, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(!unit.exists(), "switched off: the unit is removed");
    assert!(!r.join("etc/nginx/sites-available/channel-test-3.litentry.org.conf").exists(), "and its vhost");
    assert_eq!(std::fs::read_to_string(r.join("etc/agentkeys/channel-sts.env")).unwrap(), token, "kept");
    assert_eq!(std::fs::read_to_string(r.join("etc/agentkeys/worker-channel.env")).unwrap(), kek, "kept");
    assert!(reconcile(r, &[]).stdout.contains(" 0 changed"), "and then converged");
}
