//! The MCP server, the gate and the channel gateway on a real-systemd host with a real CA: a
//! release that ships all three plus their operator inputs converges them (health green, the MCP
//! server reachable through its vhost with its certificate); a changed input restarts only its
//! service; a removed input makes its service wait (exit 0, named in the summary, status and
//! doctor); `enabled = false` removes one and keeps its inputs; a malformed input is refused
//! without its value; no input value appears in any output.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::container::Container;
use common::in_container::{ACME, in_netns, start_pebble};
use common::{ACCOUNT, BASE_CONFIG};
use hostd::decide::catalog::{GATE, GATEWAY, MCP_SERVER};

const DECLARE: [&str; 7] = ["--ci", "--slot", "2", "--zone", "litentry.org", "--account-id", ACCOUNT];
const MCP_HOST: &str = "mcp-test-2.litentry.org";
const GATE_HOST: &str = "gate-test-2.litentry.org";

/// (ActiveState, NRestarts) of a unit.
fn state(c: &Container, unit: &str) -> (String, String) {
    let out = c.exec(&["systemctl", "show", "-p", "ActiveState,NRestarts", &format!("{unit}.service")]).stdout;
    let get = |k: &str| out.lines().find_map(|l| l.strip_prefix(k)).unwrap_or_default().to_owned();
    (get("ActiveState="), get("NRestarts="))
}

/// "ActiveState MainPID" of every unit of the catalog, the optional ones included.
fn all_pids(c: &Container) -> std::collections::BTreeMap<String, String> {
    let all: Vec<&str> = hostd::decide::catalog::SERVICES.iter().map(|s| s.unit).collect();
    c.main_pids_of(&all)
}

/// The units whose main PID differs between two snapshots.
fn restarted(
    before: &std::collections::BTreeMap<String, String>,
    after: &std::collections::BTreeMap<String, String>,
) -> Vec<String> {
    before.iter().filter(|(u, pid)| after.get(*u) != Some(*pid)).map(|(u, _)| u.clone()).collect()
}

#[test]
fn the_three_services_converge_wait_and_switch_off_with_their_inputs() {
    let c = Container::boot(&format!("{BASE_CONFIG}\n{ACME}"));
    let dir = tempfile::tempdir().unwrap();
    start_pebble(&c, dir.path(), 80);
    c.ship_all_binaries();
    common::write_inputs(&c.path("/"));
    let mut outputs: Vec<(String, String)> = Vec::new();

    // 1. All three on: healthy, each started once and never restarted, MCP and gate certified.
    let run = c.reconcile_acme(&DECLARE);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let s = run.json();
    assert_eq!(s["healthy"], hostd::decide::catalog::SERVICES.len(), "{}", run.stdout);
    assert!(s["waiting"].is_null(), "{}", run.stdout);
    for unit in [MCP_SERVER, GATE, GATEWAY] {
        assert_eq!(s["optional_services"][unit], "on", "{}", run.stdout);
        assert_eq!(state(&c, unit), ("active".into(), "0".into()), "{unit}");
    }
    for host in [MCP_HOST, GATE_HOST] {
        assert!(s["tls"][host].as_str().is_some_and(|t| t.starts_with("issued")), "{host}: {}", s["tls"]);
    }
    // 8 public hosts, the channel worker's, the MCP server's and the gate's; the gateway has none.
    assert_eq!(s["tls"].as_object().unwrap().len(), 11, "{}", s["tls"]);
    // The MCP server through nginx, with the certificate Pebble issued for its host.
    let roots = in_netns(
        &c,
        &["curl", "-sf", "--cacert", dir.path().join("ca.pem").to_str().unwrap(), "https://127.0.0.1:15000/roots/0"],
    );
    let issuing = dir.path().join("issuing-root.pem");
    std::fs::write(&issuing, &roots.stdout).unwrap();
    let through_vhost = |host: &str| {
        let resolve = format!("{host}:443:127.0.0.1");
        let url = format!("https://{host}/healthz");
        let cacert = issuing.to_str().unwrap();
        let out = in_netns(&c, &["curl", "-s", "--resolve", &resolve, "--cacert", cacert, &url]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let mcp = through_vhost(MCP_HOST);
    assert!(mcp.contains("\"ok\":true") || mcp.contains("\"ok\": true"), "MCP through its vhost: {mcp:?}");
    assert_eq!(through_vhost(GATE_HOST).trim(), "ok", "the gate through its vhost");
    // Inputs: credentials from root's files, the env file 0600, the gate's keys seeded into its home.
    let unit = String::from_utf8(c.read("/etc/systemd/system/agentkeys-gate.service")).unwrap();
    assert!(unit.contains("LoadCredential=upstream_api_key:/etc/agentkeys/gate/upstream-api-key\n"), "{unit}");
    assert_eq!(std::fs::metadata(c.path("/etc/agentkeys/gate.env")).unwrap().permissions().mode() & 0o777, 0o600);
    let live = c.exec(&["stat", "-c", "%U %a", "/var/lib/agentkeys/gate/keys.json"]).stdout;
    assert_eq!(live.trim(), "agentkeys 600", "the gate owns its keys file");
    outputs.push(("run 1".into(), format!("{}{}", run.stdout, run.stderr)));
    let again = c.reconcile(&[]);
    assert!(again.stdout.contains(" 0 changed") && again.stdout.contains("0 (re)started"), "{}", again.stdout);

    // 2. A changed credential restarts its service alone; the seeded keys file is the gate's now.
    let pids = all_pids(&c);
    c.write("/etc/agentkeys/gate/upstream-api-key", "test-upstream-api-key-rotated-7f8e\n");
    c.exec(&["chmod", "600", "/etc/agentkeys/gate/upstream-api-key"]);
    // The gate rewrote its keys (as its admin routes do): the seed is not copied over them.
    let rewrite = c.exec(&["sh", "-c", "printf '{\"keys\": []}\\n' > /var/lib/agentkeys/gate/keys.json"]);
    assert_eq!(rewrite.code, 0, "{rewrite:?}");
    let rotated = c.reconcile(&[]);
    assert_eq!(rotated.code, 0, "{}\n{}", rotated.stdout, rotated.stderr);
    assert_eq!(restarted(&pids, &all_pids(&c)), ["agentkeys-gate.service"], "{}", rotated.stdout);
    assert_eq!(String::from_utf8(c.read("/var/lib/agentkeys/gate/keys.json")).unwrap(), "{\"keys\": []}\n");
    outputs.push(("run 2".into(), format!("{}{}", rotated.stdout, rotated.stderr)));

    // 3. One input removed: its service waits (exit 0), named everywhere; nothing else restarts.
    let pids = all_pids(&c);
    let tokens = "/etc/agentkeys/mcp-server/vendor-tokens";
    let kept = c.read(tokens);
    std::fs::remove_file(c.path(tokens)).unwrap();
    let waiting = c.reconcile(&[]);
    assert_eq!(waiting.code, 0, "{}\n{}", waiting.stdout, waiting.stderr);
    let w = waiting.json();
    assert_eq!(w["waiting"][MCP_SERVER], serde_json::json!([tokens]), "{}", waiting.stdout);
    assert_eq!(w["optional_services"][MCP_SERVER], "waiting");
    assert!(waiting.stdout.contains(&format!("waiting: {MCP_SERVER} starts once {tokens}")), "{}", waiting.stdout);
    let mcp_state = c.exec(&["systemctl", "show", "-p", "LoadState", "agentkeys-mcp-server.service"]).stdout;
    assert_eq!(mcp_state.trim(), "LoadState=not-found", "its unit is gone");
    assert!(!c.path(&format!("/etc/nginx/sites-enabled/{MCP_HOST}.conf")).exists(), "its vhost is gone");
    let mut gone = restarted(&pids, &all_pids(&c));
    gone.retain(|u| u != "agentkeys-mcp-server.service");
    assert!(gone.is_empty(), "restarted besides the waiting service: {gone:?}");
    let status = c.exec(&["/usr/bin/agentkeys-hostd", "status"]).stdout;
    assert!(status.contains(&format!("waiting for {tokens}")), "{status}");
    let doctor = c.exec(&["/usr/bin/agentkeys-hostd", "doctor", "--json"]).stdout;
    let checks: serde_json::Value = serde_json::from_str(doctor.lines().next().unwrap()).unwrap();
    let check = checks["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == format!("service {MCP_SERVER}"))
        .unwrap_or_else(|| panic!("{doctor}"))
        .clone();
    assert_eq!(check["verdict"], "warn", "{check}");
    assert!(check["detail"].as_str().unwrap().contains(tokens), "{check}");
    outputs.extend([("status".into(), status), ("doctor".into(), doctor)]);
    outputs.push(("run 3".into(), format!("{}{}", waiting.stdout, waiting.stderr)));

    // 4. A malformed input is refused before anything changes, by position, without its value.
    std::fs::write(c.path(tokens), "openai:test-vendor-token-0a1b,test-vendor-token-2c3d\n").unwrap();
    c.exec(&["chmod", "600", tokens]);
    let bad = c.reconcile(&[]);
    assert_eq!(bad.code, 2, "{}\n{}", bad.stdout, bad.stderr);
    assert!(bad.stderr.contains(tokens) && bad.stderr.contains("entry 2 is not vendor:token"), "{}", bad.stderr);
    outputs.push(("refused run".into(), format!("{}{}", bad.stdout, bad.stderr)));
    std::fs::write(c.path(tokens), kept).unwrap();
    c.exec(&["chmod", "600", tokens]);
    let pids = all_pids(&c);
    let back = c.reconcile(&[]);
    assert_eq!(back.code, 0, "{}\n{}", back.stdout, back.stderr);
    assert_eq!(state(&c, MCP_SERVER), ("active".into(), "0".into()));
    let mut others = restarted(&pids, &all_pids(&c));
    others.retain(|u| u != "agentkeys-mcp-server.service");
    assert!(others.is_empty(), "only the MCP server started: {others:?}");

    // 5. Switched off: unit, enablement and vhost removed, inputs and the live keys kept.
    let pids = all_pids(&c);
    c.write("/etc/agentkeys/hostd.d/50-gate.toml", "[services.agentkeys-gate]\nenabled = false\n");
    let off = c.reconcile(&[]);
    assert_eq!(off.code, 0, "{}\n{}", off.stdout, off.stderr);
    assert!(off.stdout.contains("done: stop agentkeys-gate.service"), "{}", off.stdout);
    assert_eq!(off.json()["optional_services"][GATE], "off");
    assert!(!c.path("/etc/systemd/system/agentkeys-gate.service").exists());
    assert!(!c.path("/etc/systemd/system/multi-user.target.wants/agentkeys-gate.service").exists());
    assert!(!c.path(&format!("/etc/nginx/sites-enabled/{GATE_HOST}.conf")).exists());
    for kept in
        ["/etc/agentkeys/gate/upstream-api-key", "/etc/agentkeys/gate/keys.json", "/var/lib/agentkeys/gate/keys.json"]
    {
        assert!(c.path(kept).exists(), "{kept} is kept");
    }
    let mut others = restarted(&pids, &all_pids(&c));
    others.retain(|u| u != "agentkeys-gate.service");
    assert!(others.is_empty(), "restarted besides the gate: {others:?}");
    outputs.push(("run 5".into(), format!("{}{}", off.stdout, off.stderr)));

    // 6. No input value in the journal, the report, status, doctor or any run's output.
    outputs.push(("journal".into(), c.exec(&["journalctl", "-b", "--no-pager", "-o", "verbose"]).stdout));
    outputs.push(("report".into(), String::from_utf8(c.read("/var/lib/agentkeys-hostd/last-report.json")).unwrap()));
    outputs.push(("status json".into(), c.exec(&["/usr/bin/agentkeys-hostd", "status", "--json"]).stdout));
    let mut secrets: Vec<&str> = common::INPUT_SECRETS.to_vec();
    secrets.push("test-upstream-api-key-rotated-7f8e");
    for (name, text) in &outputs {
        assert!(text.len() > 50, "{name} was read");
        for s in &secrets {
            assert!(!text.contains(s), "an input value appears in the {name}");
        }
    }
    eprintln!("input values searched: {} in {} outputs", secrets.len(), outputs.len());
}

use std::os::unix::fs::PermissionsExt;
