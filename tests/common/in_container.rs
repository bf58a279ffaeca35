//! Certificates inside the real-systemd container: Pebble and challtestsrv run in the container's
//! own network namespace; host tools (curl, openssl) are pointed at it with `nsenter -n`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use super::container::Container;

/// The `[acme]` section that points hostd at the Pebble started by `start_pebble`.
pub const ACME: &str = "[acme]\ndirectory_url = \"https://127.0.0.1:14000/dir\"\nca_bundle = \"/etc/pebble/ca.pem\"\n\
                        public_ipv4 = \"127.0.0.1\"\nresolver = \"127.0.0.1:8053\"\n";

/// Run a host tool inside the container's network namespace only.
pub fn in_netns(c: &Container, args: &[&str]) -> std::process::Output {
    Command::new("nsenter").args(["-t", &c.leader.to_string(), "-n"]).args(args).output().unwrap()
}

/// Pebble's forgiving switches: no validation delay, no nonce rejection. Without them (its
/// default mode) it rejects 5 % of nonces (`badNonce`) and validates after a random delay.
pub const FORGIVING: [&str; 2] = ["PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0"];

/// Run a Pebble with `/etc/pebble/<config>` as the transient unit `unit` (its DNS: challtestsrv),
/// in its forgiving mode.
pub fn run_pebble(c: &Container, unit: &str, config: &str, env: &[&str]) {
    let all: Vec<&str> = FORGIVING.iter().chain(env).copied().collect();
    run_pebble_as(c, unit, config, &all);
}

/// Pebble reuses a valid authorization for half of new orders by default; Pebble 2.4 then left
/// new-order handlers hanging without an answer when hostd created its orders in parallel (seen in
/// `crash_matrix`: every order request still open 10 minutes later). hostd now bounds each request
/// (30 s) and fails the order; the tests' CAs reuse nothing, so they exercise hostd, not that bug.
pub const NO_AUTHZ_REUSE: &str = "PEBBLE_AUTHZREUSE=0";

/// Run a Pebble with exactly the environment `env` (none: its default, unforgiving mode, but for
/// [`NO_AUTHZ_REUSE`]).
pub fn run_pebble_as(c: &Container, unit: &str, config: &str, env: &[&str]) {
    let mut ca = vec!["systemd-run", "--unit", unit, "-p", "WorkingDirectory=/etc/pebble", "-E", NO_AUTHZ_REUSE];
    for e in env {
        ca.extend(["-E", e]);
    }
    ca.extend(["/usr/local/sbin/pebble", "-config", config, "-dnsserver", "127.0.0.1:8053"]);
    assert_eq!(c.exec(&ca).code, 0, "{unit}");
}

/// Start Pebble validating HTTP-01 on `http_port` (80: nginx answers; anything else: nobody does).
pub fn start_pebble(c: &Container, dir: &std::path::Path, http_port: u16) {
    start_pebble_with(c, dir, http_port, None);
}

/// The same, with certificates valid for `validity_secs` (Pebble's default: 5 years).
pub fn start_pebble_with(c: &Container, dir: &std::path::Path, http_port: u16, validity_secs: Option<u64>) {
    start_pebble_env(c, dir, http_port, validity_secs, &[]);
}

/// The same, with extra `NAME=VALUE` environment for Pebble (e.g. `PEBBLE_CHAIN_LENGTH=4`).
pub fn start_pebble_env(
    c: &Container,
    dir: &std::path::Path,
    http_port: u16,
    validity_secs: Option<u64>,
    env: &[&str],
) {
    let all: Vec<&str> = FORGIVING.iter().chain(env).copied().collect();
    start_pebble_exactly(c, dir, http_port, validity_secs, &all);
}

/// Pebble and challtestsrv with exactly the environment `env` for Pebble (none: the default,
/// unforgiving mode: nonce rejection and validation delays on).
pub fn start_pebble_exactly(
    c: &Container,
    dir: &std::path::Path,
    http_port: u16,
    validity_secs: Option<u64>,
    env: &[&str],
) {
    super::pebble::api_certs(dir);
    for f in ["cert.pem", "key.pem", "ca.pem"] {
        c.install(dir.join(f).to_str().unwrap(), &format!("/etc/pebble/{f}"));
    }
    c.write("/etc/pebble/pebble.json", &super::pebble::config_json_validity("127.0.0.1", http_port, validity_secs));
    c.install("/usr/bin/pebble", "/usr/local/sbin/pebble");
    c.install("/usr/bin/pebble-challtestsrv", "/usr/local/sbin/pebble-challtestsrv");
    let mut dns = vec![
        "systemd-run".to_owned(),
        "--unit".into(),
        "challtestsrv".into(),
        "/usr/local/sbin/pebble-challtestsrv".into(),
    ];
    dns.extend(super::pebble::challtestsrv_args("127.0.0.1"));
    let dns: Vec<&str> = dns.iter().map(String::as_str).collect();
    assert_eq!(c.exec(&dns).code, 0);
    run_pebble_as(c, "pebble", "pebble.json", env);
    for port in [8055, 14000, 15000] {
        let probe =
            format!("for i in $(seq 100); do exec 3<>/dev/tcp/127.0.0.1/{port} && exit 0; sleep 0.1; done; exit 1");
        assert_eq!(c.exec(&["bash", "-c", &probe]).code, 0, "port {port}");
    }
}

pub fn set_a(c: &Container, host: &str, addr: &str) {
    let body = format!(r#"{{"host":"{host}.","addresses":["{addr}"]}}"#);
    let out = in_netns(c, &["curl", "-sf", "-X", "POST", "-d", &body, "http://127.0.0.1:8055/add-a"]);
    assert!(out.status.success(), "{out:?}");
}

pub fn clear_a(c: &Container, host: &str) {
    let body = format!(r#"{{"host":"{host}."}}"#);
    let out = in_netns(c, &["curl", "-sf", "-X", "POST", "-d", &body, "http://127.0.0.1:8055/clear-a"]);
    assert!(out.status.success(), "{out:?}");
}

/// The serial nginx serves for `host` on 127.0.0.1:443, verified against `root`.
pub fn served_serial(c: &Container, host: &str, root: &std::path::Path) -> String {
    let out = in_netns(c, &["bash", "-c", &served_serial_script(host, &root.display().to_string())]);
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A shell line printing `serial=…` of what 127.0.0.1:443 serves for `host`, only if the chain
/// verifies against `ca_file` (empty output otherwise).
pub fn served_serial_script(host: &str, ca_file: &str) -> String {
    format!(
        "echo | openssl s_client -connect 127.0.0.1:443 -servername {host} -CAfile {ca_file} -verify_return_error 2>/dev/null | openssl x509 -noout -serial"
    )
}

pub fn installed_serial(c: &Container, host: &str) -> String {
    let path = c.path(&format!("/var/lib/agentkeys-hostd/tls/{host}/current/fullchain.pem"));
    let out = Command::new("openssl").args(["x509", "-noout", "-serial", "-in"]).arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Pebble and challtestsrv run from this machine's binaries inside the container's network
/// namespace only (`nsenter -n`), for a release whose glibc is older than they need. Stopped (by
/// PID) when dropped.
pub struct HostPebble {
    children: Vec<std::process::Child>,
}

impl Drop for HostPebble {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Start them for `c`, validating HTTP-01 on port 80 (nginx answers); `/etc/pebble/ca.pem` inside
/// is the API's CA, as [`ACME`] expects.
pub fn start_host_pebble(c: &Container, dir: &std::path::Path) -> HostPebble {
    use std::process::Stdio;
    super::pebble::api_certs(dir);
    c.install(dir.join("ca.pem").to_str().unwrap(), "/etc/pebble/ca.pem");
    std::fs::write(dir.join("pebble.json"), super::pebble::config_json_validity("127.0.0.1", 80, None)).unwrap();
    let leader = c.leader.to_string();
    let spawn = |program: &str, args: &[String]| {
        Command::new("nsenter")
            .args(["-t", &leader, "-n", program])
            .args(args)
            .current_dir(dir)
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{program}: {e}"))
    };
    let mut p = HostPebble { children: Vec::new() };
    p.children.push(spawn("/usr/bin/pebble-challtestsrv", &super::pebble::challtestsrv_args("127.0.0.1")));
    let args = ["-config", "pebble.json", "-dnsserver", "127.0.0.1:8053"].map(str::to_owned);
    p.children.push(spawn("/usr/bin/pebble", &args));
    for port in [8055, 14000, 15000] {
        let probe = format!(
            "for i in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/{port}) 2>/dev/null && exit 0; sleep 0.1; done; exit 1"
        );
        assert!(in_netns(c, &["bash", "-c", &probe]).status.success(), "host Pebble: port {port}");
    }
    p
}
