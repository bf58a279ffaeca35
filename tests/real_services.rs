//! The real upstream services under hostd on a real-systemd host (issue #12's acceptance). Not in CI:
//! it needs the service binaries built from the upstream source (public mirror
//! `litentry/agent-terrier`, see docs/upstream-contracts.md), which this repository neither ships
//! nor builds. Run it with
//! `AGENTKEYS_REAL_BIN_DIR=DIR cargo test --test real_services -- --ignored --nocapture`, where DIR
//! holds any of the catalog's binary names; services without a real binary there keep the stand-in.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::container::Container;

const DECLARE: [&str; 7] = ["--ci", "--slot", "2", "--zone", "example.org", "--account-id", "123456789012"];

fn real_bin_dir() -> std::path::PathBuf {
    let Some(dir) = std::env::var_os("AGENTKEYS_REAL_BIN_DIR") else {
        panic!(
            "AGENTKEYS_REAL_BIN_DIR is not set: it must name a directory holding upstream service binaries \
             (agentkeys-broker-server, agentkeys-worker-creds, …) built from litentry/agent-terrier; the broker \
             with the auth-email-link feature. This test is not part of CI."
        )
    };
    let dir = std::path::PathBuf::from(dir);
    assert!(dir.is_dir(), "AGENTKEYS_REAL_BIN_DIR={} is not a directory", dir.display());
    dir
}

fn show(c: &Container, units: &[String], props: &str) -> String {
    let mut args = vec!["systemctl", "show", "-p", props];
    args.extend(units.iter().map(String::as_str));
    c.exec(&args).stdout
}

#[test]
#[ignore = "needs AGENTKEYS_REAL_BIN_DIR (upstream binaries); not in CI"]
fn real_services_converge_stay_up_and_stop_cleanly() {
    let dir = real_bin_dir();
    // No configuration file at all: every default (RPC, contract addresses) must come from hostd.
    let c = Container::boot("");
    std::fs::remove_file(c.path("/etc/agentkeys/hostd.toml")).unwrap();
    let real = install_real(&c, &dir);
    assert!(real.contains(&"agentkeys-broker-server"), "the real broker is the point of this test");
    println!("real binaries: {}", real.join(", "));

    let t = Instant::now();
    let run = c.reconcile(&DECLARE);
    println!("first reconcile: exit {} in {:.1} s\n{}", run.code, t.elapsed().as_secs_f64(), run.stdout);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.json()["healthy"], hostd::decide::catalog::SERVICES.len(), "{}", run.stdout);

    std::thread::sleep(Duration::from_secs(5));
    let units: Vec<String> = hostd::decide::catalog::SERVICES.iter().map(|s| format!("{}.service", s.unit)).collect();
    let state = show(&c, &units, "Id,ActiveState,NRestarts");
    println!("5 s later:\n{state}");
    assert!(
        !state.contains("NRestarts=")
            || state.lines().filter(|l| l.starts_with("NRestarts=")).all(|l| l == "NRestarts=0"),
        "{state}"
    );
    assert_eq!(state.matches("ActiveState=active").count(), units.len(), "{state}");

    let again = c.reconcile(&[]);
    println!("flagless re-run: exit {}\n{}", again.code, again.stdout);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(again.stdout.contains(" 0 changed") && again.stdout.contains("0 (re)started"), "{}", again.stdout);

    let t = Instant::now();
    let stop = c.exec(&["systemctl", "stop", "agentkeys-broker.service"]);
    let took = t.elapsed();
    let result = show(&c, &["agentkeys-broker.service".into()], "Result");
    println!("systemctl stop agentkeys-broker: {:.1} s, {}", took.as_secs_f64(), result.trim());
    assert_eq!(stop.code, 0, "{}", stop.stderr);
    assert_eq!(result.trim(), "Result=success");
    assert!(took < Duration::from_secs(hostd::decide::catalog::STOP_TIMEOUT_SECS), "{took:?}");

    let after = c.reconcile(&[]);
    println!("reconcile after the stop: exit {}\n{}", after.code, after.stdout);
    assert_eq!(after.code, 0, "{}", after.stderr);

    // hostd's journal identifier holds hostd alone; each service logs under its unit's name.
    let hostd = c.exec(&["journalctl", "-q", "-o", "cat", "-t", "agentkeys-hostd"]).stdout;
    let creds = c.exec(&["journalctl", "-q", "-o", "cat", "-t", "agentkeys-worker-creds"]).stdout;
    println!(
        "journal -t agentkeys-worker-creds (first lines):\n{}",
        creds.lines().take(3).collect::<Vec<_>>().join("\n")
    );
    assert!(!creds.trim().is_empty(), "the creds worker logs under its own identifier");
    assert!(!hostd.contains("listening"), "no service output under agentkeys-hostd:\n{hostd}");
}

/// Install every real binary `dir` holds over the stand-ins; returns their names.
fn install_real(c: &Container, dir: &std::path::Path) -> Vec<&'static str> {
    let mut real = Vec::new();
    for svc in hostd::decide::catalog::SERVICES {
        let from = dir.join(svc.binary);
        if from.is_file() && !real.contains(&svc.binary) {
            c.install(from.to_str().unwrap(), &format!("/usr/local/bin/{}", svc.binary));
            real.push(svc.binary);
        }
    }
    real
}

/// The escrow with the real binaries (issue #20): no configuration file (the escrow is on by
/// default on a real host), moto's Secrets Manager in the namespace both hosts join. Host A's real
/// broker mints its keypairs (`keygen`, into hostd's staging) and they are escrowed before they are
/// installed; A is destroyed; B restores every value byte for byte, and B's real backend derives
/// the same wallet address and its real broker serves the same JWKS.
#[test]
#[ignore = "needs AGENTKEYS_REAL_BIN_DIR (upstream binaries); not in CI"]
fn real_services_replace_a_dead_host_from_the_escrow() {
    let dir = real_bin_dir();
    let moto = common::moto::Moto::start_in_netns();
    let ns = moto.netns.clone().unwrap();
    let aws: Vec<String> = moto.env().iter().map(|(k, v)| format!("{k}={v}")).collect();
    let reconcile = |c: &Container| {
        let mut args: Vec<&str> = vec!["env"];
        args.extend(aws.iter().map(String::as_str));
        args.extend(["/usr/bin/agentkeys-hostd", "reconcile", "--no-acme", "--json"]);
        args.extend(DECLARE);
        c.exec(&args)
    };
    let files = [
        "/etc/agentkeys/dev-key-service.env",
        "/etc/agentkeys/worker-creds.env",
        "/etc/agentkeys/worker-memory.env",
        "/var/lib/agentkeys/.agentkeys/broker/oidc-keypair.json",
        "/var/lib/agentkeys/.agentkeys/broker/session-keypair.json",
    ];
    let curl = |args: &[&str]| {
        let out = std::process::Command::new("ip")
            .args(["netns", "exec", &ns, "curl", "-sS", "--max-time", "10"])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    let omni = "5a17c0de".repeat(8);
    let body = format!("{{\"omni_account\":\"{omni}\"}}");
    let identity = || {
        let address =
            curl(&["-H", "Content-Type: application/json", "-d", &body, "http://127.0.0.1:8090/dev/derive-address"]);
        (address, curl(&["http://127.0.0.1:8091/.well-known/jwks.json"]))
    };
    let boot = || {
        let c = Container::boot_in_netns("", &ns);
        std::fs::remove_file(c.path("/etc/agentkeys/hostd.toml")).unwrap();
        let real = install_real(&c, &dir);
        assert!(real.contains(&"agentkeys-broker-server") && real.contains(&"agentkeys-mock-server"), "{real:?}");
        c
    };
    let (values, before) = {
        let a = boot();
        let t = Instant::now();
        let run = reconcile(&a);
        println!("host A: exit {} in {:.1} s\n{}", run.code, t.elapsed().as_secs_f64(), run.stdout);
        assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
        assert_eq!(run.json()["escrow"], "in_sync", "{}", run.stdout);
        let values: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(a.path(f)).unwrap()).collect();
        (values, identity())
    };
    println!("host A: address {}, JWKS {} bytes", before.0.trim(), before.1.len());
    let t = Instant::now();
    let b = boot();
    let booted = t.elapsed();
    let run = reconcile(&b);
    println!(
        "host B: booted in {:.1} s, reconcile exit {} in {:.1} s\n{}",
        booted.as_secs_f64(),
        run.code,
        t.elapsed().as_secs_f64() - booted.as_secs_f64(),
        run.stdout
    );
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.json()["secrets_restored"].as_array().unwrap().len(), 5, "{}", run.stdout);
    for (f, v) in files.iter().zip(&values) {
        assert_eq!(&std::fs::read(b.path(f)).unwrap(), v, "{f} byte-identical");
    }
    let after = identity();
    println!("host B: address {}, JWKS equal: {}", after.0.trim(), after.1 == before.1);
    assert!(before.0.contains("\"address\":\"0x"), "{}", before.0);
    assert_eq!(after, before, "the same wallet address and the same JWKS");
}

/// The MCP server, the gate and the channel gateway (issue #23) as upstream builds them, under
/// hostd with their operator inputs: each starts from its unit, passes its health gate and stays up
/// (0 restarts); the other services keep the stand-in unless `DIR` holds them too. The gateway's
/// Telegram transport dials out only, and the container has no network beyond its loopback.
#[test]
#[ignore = "needs AGENTKEYS_REAL_BIN_DIR (upstream binaries); not in CI"]
fn real_mcp_server_gate_and_gateway_start_under_hostd() {
    use hostd::decide::catalog::{GATE, GATEWAY, MCP_SERVER};
    let dir = real_bin_dir();
    let c = Container::boot(common::BASE_CONFIG);
    c.ship_all_binaries();
    let real = install_real(&c, &dir);
    for binary in ["agentkeys-mcp-server", "agentkeys-gate", "agentkeys-worker-channel-weixin"] {
        assert!(real.contains(&binary), "{binary} is not in AGENTKEYS_REAL_BIN_DIR");
    }
    println!("real binaries: {}", real.join(", "));
    common::write_inputs(&c.path("/"));

    let t = Instant::now();
    let run = c.reconcile(&DECLARE);
    println!("reconcile: exit {} in {:.1} s\n{}", run.code, t.elapsed().as_secs_f64(), run.stdout);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let s = run.json();
    assert_eq!(s["healthy"], hostd::decide::catalog::SERVICES.len(), "{}", run.stdout);
    std::thread::sleep(Duration::from_secs(5));
    let units: Vec<String> = [MCP_SERVER, GATE, GATEWAY].iter().map(|u| format!("{u}.service")).collect();
    let state = show(&c, &units, "Id,ActiveState,NRestarts,MainPID");
    println!("5 s later:\n{state}");
    assert_eq!(state.matches("ActiveState=active").count(), 3, "{state}");
    assert_eq!(state.matches("NRestarts=0").count(), 3, "{state}");
    // What each real binary answers on its loopback port, as the health gate saw it.
    for (unit, port) in [(MCP_SERVER, 8088), (GATE, 8077), (GATEWAY, 9100)] {
        let get = format!("exec 3<>/dev/tcp/127.0.0.1/{port}; printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3; cat <&3");
        let answer = c.exec(&["bash", "-c", &get]).stdout;
        println!("{unit} /healthz: {}", answer.lines().last().unwrap_or_default());
        assert!(answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200"), "{unit}: {answer}");
    }
    let journal =
        c.exec(&["journalctl", "-q", "-o", "cat", "-u", "agentkeys-gate", "-u", "agentkeys-mcp-server"]).stdout;
    println!("journal (gate, MCP server, first lines):\n{}", journal.lines().take(6).collect::<Vec<_>>().join("\n"));
    let all = c.exec(&["journalctl", "-b", "--no-pager"]).stdout;
    for secret in common::INPUT_SECRETS {
        assert!(!all.contains(secret), "an input value appears in the journal");
    }
    let t = Instant::now();
    let stop = c.exec(&["systemctl", "stop", &format!("{GATEWAY}.service")]);
    let result = show(&c, &[format!("{GATEWAY}.service")], "Result");
    println!("systemctl stop {GATEWAY}: {:.1} s, {}", t.elapsed().as_secs_f64(), result.trim());
    assert_eq!(stop.code, 0, "{}", stop.stderr);
    assert_eq!(result.trim(), "Result=success", "the gateway drains on SIGTERM and exits 0");
}
