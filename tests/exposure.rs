//! Exposure after a full converge on a real-systemd host (services, certificates, hostd's daemon):
//! `systemd-analyze security` per unit (≤ 3.0, against the old script's unit), listeners on
//! non-loopback addresses, the IP-filtered backend probed from a second network namespace the test
//! creates, file modes and owners under the secret trees, and no secret bytes in any output —
//! with the escrow on (moto's Secrets Manager in the network namespace the container joins), so
//! the escrow's paths (the run, status, doctor, `escrow status`, the daemon, metrics) are searched too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use common::container::Container;
use common::in_container::{ACME, start_pebble};
use common::{ACCOUNT, BASE_CONFIG};

const DECLARE: [&str; 7] = ["--ci", "--slot", "2", "--zone", "litentry.org", "--account-id", ACCOUNT];

/// `systemd-analyze security UNIT`'s overall exposure (0.0 best … 10.0 worst).
fn exposure(c: &Container, unit: &str) -> f64 {
    let out = c.exec(&["systemd-analyze", "security", "--no-pager", unit]);
    let line =
        out.stdout.lines().find(|l| l.contains("Overall exposure level")).unwrap_or_else(|| panic!("{unit}: {out:?}"));
    line.split(':').nth(1).unwrap().split_whitespace().next().unwrap().parse().unwrap()
}

/// (address, port, process) of every listening TCP socket.
fn listeners(c: &Container) -> Vec<(String, u16, String)> {
    let out = c.exec(&["ss", "-Hltnp"]).stdout;
    out.lines()
        .map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            let (addr, port) = cols[3].rsplit_once(':').unwrap();
            let process = cols.get(5).and_then(|p| p.split('"').nth(1)).unwrap_or("?").to_owned();
            (addr.trim_matches(['[', ']']).to_owned(), port.parse().unwrap(), process)
        })
        .collect()
}

fn is_loopback(addr: &str) -> bool {
    addr.starts_with("127.") || addr == "::1"
}

/// Connect from inside `ns` to `addr:port` and send a request; the answer's first bytes.
fn probe_from(ns: &str, addr: &str, port: u16) -> Option<String> {
    let script = format!(
        "exec 3<>/dev/tcp/{addr}/{port} && printf 'GET /healthz HTTP/1.0\\r\\nHost: x\\r\\n\\r\\n' >&3 && head -c 12 <&3"
    );
    let out = Command::new("ip").args(["netns", "exec", ns, "timeout", "3", "bash", "-c", &script]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.success() && !text.is_empty()).then_some(text)
}

/// A network namespace made by the test, joined to the container by a veth pair; deleted on drop.
struct Netns(String);

impl Netns {
    fn link_to(c: &Container) -> Netns {
        let pid = std::process::id();
        let ns = Netns(format!("hostd-exp-{pid}"));
        let ip = |args: &[&str]| {
            let out = Command::new("ip").args(args).output().unwrap();
            assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        let (outer, inner) = (format!("vx{}", pid % 100_000), format!("vc{}", pid % 100_000));
        ip(&["netns", "add", &ns.0]);
        // Both ends are born inside the test's namespace; one moves into the container's.
        ip(&["-n", &ns.0, "link", "add", &outer, "type", "veth", "peer", "name", &inner]);
        ip(&["-n", &ns.0, "link", "set", &inner, "netns", &c.leader.to_string()]);
        ip(&["-n", &ns.0, "addr", "add", "10.231.7.2/30", "dev", &outer]);
        ip(&["-n", &ns.0, "link", "set", &outer, "up"]);
        assert_eq!(c.exec(&["ip", "addr", "add", "10.231.7.1/30", "dev", &inner]).code, 0);
        assert_eq!(c.exec(&["ip", "link", "set", &inner, "up"]).code, 0);
        ns
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Can a user other than root and agentkeys read `path` (its mode and every directory above it)?
fn world_readable(path: &Path, root: &Path) -> bool {
    let mode = |p: &Path| std::fs::metadata(p).map(|m| m.mode()).unwrap_or(0);
    if mode(path) & 0o004 == 0 {
        return false;
    }
    let mut dir = path.parent();
    while let Some(d) = dir {
        if mode(d) & 0o001 == 0 {
            return false;
        }
        if d == root {
            break;
        }
        dir = d.parent();
    }
    true
}

#[test]
fn exposure_after_a_full_converge() {
    let moto = common::moto::Moto::start_in_netns();
    let config = BASE_CONFIG.replace("enabled = false", "enabled = true");
    let c = Container::boot_in_netns(&format!("{config}\n{ACME}"), moto.netns.as_deref().unwrap());
    let dir = tempfile::tempdir().unwrap();
    start_pebble(&c, dir.path(), 80);
    // The release ships the optional services too, and the operator inputs of the three that take
    // some are in place: every managed service runs.
    c.ship_all_binaries();
    common::write_inputs(&c.path("/"));
    let aws: Vec<String> = moto.env().iter().map(|(k, v)| format!("{k}={v}")).collect();
    let with_aws = |args: &[&str]| {
        let mut all: Vec<&str> = vec!["env"];
        all.extend(aws.iter().map(String::as_str));
        all.extend(args);
        c.exec(&all)
    };
    let run = with_aws(&[&["/usr/bin/agentkeys-hostd", "reconcile", "--json"][..], &DECLARE].concat());
    assert_eq!(run.json()["escrow"], "in_sync", "{}", run.stdout);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    // hostd's own unit, running as the package would run it.
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../units/agentkeys-hostd.service");
    c.install(unit.to_str().unwrap(), "/etc/systemd/system/agentkeys-hostd.service");
    assert_eq!(c.exec(&["systemctl", "daemon-reload"]).code, 0);
    let started = c.exec(&["systemctl", "start", "agentkeys-hostd"]);
    assert_eq!(started.code, 0, "{started:?}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let record = loop {
        let r: serde_json::Value =
            serde_json::from_slice(&std::fs::read(c.path("/run/agentkeys-hostd/daemon.json")).unwrap_or_default())
                .unwrap_or_default();
        if r["reconciles"]["start"] == 1 {
            break r;
        }
        assert!(std::time::Instant::now() < deadline, "the daemon's first run did not finish");
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert_eq!(record["last"]["exit_code"], 0, "the hardened daemon converges: {record:#}");

    // 1. systemd-analyze security: every managed unit and hostd's own at most 3.0.
    let old = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/golden/prod-adopted-https/seed/etc/systemd/system/agentkeys-broker.service");
    c.install(old.to_str().unwrap(), "/etc/systemd/system/oldscript-broker.service");
    assert_eq!(c.exec(&["systemctl", "daemon-reload"]).code, 0);
    let before = exposure(&c, "oldscript-broker.service");
    eprintln!("exposure: {before:.1} the old script's broker unit (before hardening)");
    let mut units: Vec<String> =
        hostd::decide::catalog::SERVICES.iter().map(|s| format!("{}.service", s.unit)).collect();
    units.push("agentkeys-hostd.service".into());
    let mut worst: f64 = 0.0;
    for u in &units {
        let score = exposure(&c, u);
        eprintln!("exposure: {score:.1} {u}");
        worst = worst.max(score);
        assert!(score <= 3.0, "{u}: exposure {score} > 3.0");
        // The services with operator inputs are hardened like the workers.
        let with_inputs = hostd::decide::catalog::SERVICES
            .iter()
            .any(|s| !s.inputs.is_empty() && u == &format!("{}.service", s.unit));
        assert!(!with_inputs || score <= 1.2, "{u}: exposure {score} > 1.2");
    }
    assert!(before > worst, "the check can tell: the unhardened unit scores {before}");
    // The hardened services still pass their health checks (the converge above gated on them).
    assert_eq!(run.json()["healthy"], hostd::decide::catalog::SERVICES.len(), "{}", run.stdout);

    // 2. Listeners: only nginx (80/443), sshd (22) and the IP-filtered backend on non-loopback (the
    // signer binds loopback itself).
    let all = listeners(&c);
    for (addr, port, process) in &all {
        eprintln!("listener: {addr}:{port} {process}");
    }
    for (addr, port, process) in all.iter().filter(|(a, ..)| !is_loopback(a)) {
        let allowed = match (process.as_str(), port) {
            ("nginx", 80 | 443) | ("sshd", 22) => true,
            (_, 8090 | 8092) => {
                let unit = if *port == 8090 { "agentkeys-backend" } else { "agentkeys-signer" };
                let deny = c.exec(&["systemctl", "show", "-p", "IPAddressDeny", "--value", &format!("{unit}.service")]);
                !deny.stdout.trim().is_empty()
            }
            _ => false,
        };
        assert!(allowed, "{process} listens on {addr}:{port}, reachable from outside the host");
    }
    assert!(all.iter().any(|(a, p, n)| !is_loopback(a) && *p == 443 && n == "nginx"), "nginx serves 443");

    // 3. From a second network namespace: nginx answers (the path works), the backend does not.
    let ns = Netns::link_to(&c);
    let nginx = probe_from(&ns.0, "10.231.7.1", 80);
    assert!(nginx.as_deref().is_some_and(|a| a.starts_with("HTTP/1.1")), "nginx from outside: {nginx:?}");
    for port in [8090, 8092] {
        assert_eq!(probe_from(&ns.0, "10.231.7.1", port), None, "port {port} answered a client outside the host");
    }
    drop(ns);

    // 4. Files: spec modes and owners; nothing under the secret trees is readable by other users.
    let uid = |name: &str| -> u32 {
        let passwd = String::from_utf8(c.read("/etc/passwd")).unwrap();
        passwd.lines().find(|l| l.starts_with(&format!("{name}:"))).unwrap().split(':').nth(2).unwrap().parse().unwrap()
    };
    let owners = [0, uid("agentkeys")];
    let root = c.path("/");
    let mut checked = 0;
    for tree in ["/etc/agentkeys", "/var/lib/agentkeys", "/var/lib/agentkeys-hostd"] {
        let out = Command::new("find").arg(c.path(tree)).arg("-mindepth").arg("0").output().unwrap();
        for p in String::from_utf8_lossy(&out.stdout).lines().map(Path::new) {
            let m = std::fs::symlink_metadata(p).unwrap();
            if m.file_type().is_symlink() {
                continue;
            }
            checked += 1;
            assert!(owners.contains(&m.uid()), "{} is owned by uid {}", p.display(), m.uid());
            assert_eq!(m.mode() & 0o002, 0, "{} is world-writable", p.display());
            // Public by design: challenge tokens (nginx serves them) and the identity record (the issuer).
            let public = p.to_string_lossy().contains("acme-webroot") || p.ends_with("identity.json");
            if m.is_file() && !public {
                assert!(!world_readable(p, &root), "{} is readable by any user", p.display());
            }
        }
    }
    for (path, mode) in [
        ("/etc/agentkeys", 0o750),
        ("/etc/agentkeys/dev-key-service.env", 0o600),
        ("/etc/agentkeys/worker-creds.env", 0o600),
        ("/etc/agentkeys/gate", 0o700),
        ("/etc/agentkeys/mcp-server.env", 0o600),
        ("/etc/agentkeys/gate.env", 0o600),
        ("/etc/agentkeys/worker-channel-weixin.env", 0o600),
        ("/var/lib/agentkeys/gate", 0o700),
        ("/var/lib/agentkeys/gate/keys.json", 0o600),
        ("/var/lib/agentkeys/.agentkeys/broker", 0o700),
        ("/var/lib/agentkeys-hostd/acme", 0o700),
        ("/var/lib/agentkeys-hostd/acme/account.json", 0o600),
        ("/var/lib/agentkeys-hostd/tls/broker-test-2.litentry.org", 0o700),
        ("/var/lib/agentkeys-hostd/tls/broker-test-2.litentry.org/current/privkey.pem", 0o600),
    ] {
        assert_eq!(std::fs::metadata(c.path(path)).unwrap().mode() & 0o7777, mode, "{path}");
    }
    eprintln!("files checked for mode and owner: {checked}");

    // 5. No secret bytes (KEKs, master secret, session key, TLS key, ACME account key) in any output.
    let mut secrets = c.env_secrets();
    let key_pem =
        String::from_utf8(c.read("/var/lib/agentkeys-hostd/tls/broker-test-2.litentry.org/current/privkey.pem"))
            .unwrap();
    secrets.extend(key_pem.lines().filter(|l| !l.starts_with("-----") && l.len() >= 40).map(str::to_owned));
    let account: serde_json::Value =
        serde_json::from_slice(&c.read("/var/lib/agentkeys-hostd/acme/account.json")).unwrap();
    let account_key = account["credentials"]["key_pkcs8"].as_str().unwrap_or_default().to_owned();
    assert!(account_key.len() > 40, "the ACME account key was found: {}", account["credentials"]);
    secrets.push(account_key);
    for keypair in ["oidc-keypair.json", "session-keypair.json"] {
        let k: serde_json::Value =
            serde_json::from_slice(&c.read(&format!("/var/lib/agentkeys/.agentkeys/broker/{keypair}"))).unwrap();
        secrets.push(k["private_key"].as_str().unwrap().to_owned());
    }
    // The operator inputs' values.
    secrets.extend(common::INPUT_SECRETS.iter().map(|s| (*s).to_owned()));
    // The escrow's own encoding of each value (base64 in its payload) must not leak either.
    use base64::Engine as _;
    let encoded: Vec<String> =
        secrets.iter().map(|s| base64::engine::general_purpose::STANDARD.encode(s.as_bytes())).collect();
    secrets.extend(encoded);
    let scrape = "exec 3<>/dev/tcp/127.0.0.1/9464; printf 'GET /metrics HTTP/1.0\\r\\n\\r\\n' >&3; cat <&3";
    let outputs = [
        ("journal", c.exec(&["journalctl", "-b", "--no-pager", "-o", "verbose"]).stdout),
        ("report", String::from_utf8(c.read("/var/lib/agentkeys-hostd/last-report.json")).unwrap()),
        ("status", c.exec(&["/usr/bin/agentkeys-hostd", "status", "--json"]).stdout),
        ("daemon record", String::from_utf8(c.read("/run/agentkeys-hostd/daemon.json")).unwrap()),
        ("metrics", c.exec(&["bash", "-c", scrape]).stdout),
        ("run", format!("{}{}", run.stdout, run.stderr)),
        ("doctor", with_aws(&["/usr/bin/agentkeys-hostd", "doctor", "--json"]).stdout),
        ("escrow status", with_aws(&["/usr/bin/agentkeys-hostd", "escrow", "status", "--json"]).stdout),
    ];
    assert!(outputs[7].1.contains("\"verdict\":\"in_sync\""), "the escrow was read: {}", outputs[7].1);
    for (name, text) in &outputs {
        assert!(text.len() > 100, "{name} was read");
        for s in &secrets {
            assert!(!text.contains(s.as_str()), "a secret value appears in the {name}");
        }
    }
    eprintln!("secret values searched: {} in {} outputs", secrets.len(), outputs.len());
}
