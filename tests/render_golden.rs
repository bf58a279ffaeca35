//! Golden tests: each case under tests/golden/<case>/ (args, hostd.toml, optional operator.env and
//! seed/ tree) is converged into a fake root with the real binary and compared, file by file and
//! mode by mode, with <case>/expected/. `UPDATE_GOLDEN=1` rewrites the expected trees.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};

use common::{Snap, snapshot};

const CASES: [&str; 13] = [
    "prod",
    "test-1",
    "test-7-multilabel",
    "base",
    "prod-adopted-https",
    "prod-adopted-https-modern",
    "test-3-channel",
    "prod-optional-on",
    "prod-optional-waiting",
    "prod-optional-off",
    "test-1-optional-on",
    "test-1-optional-waiting",
    "test-1-optional-off",
];

fn case_dir(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/golden").join(case)
}

fn copy_tree(from: &Path, to: &Path) {
    if !from.exists() {
        return;
    }
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let dest = to.join(p.file_name().unwrap());
        let m = std::fs::symlink_metadata(&p).unwrap();
        if m.file_type().is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&p).unwrap(), &dest).unwrap();
        } else if m.is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
            copy_tree(&p, &dest);
        } else {
            std::fs::copy(&p, &dest).unwrap();
        }
    }
}

/// Converge one case; returns the root.
fn converge(case: &str) -> tempfile::TempDir {
    let dir = case_dir(case);
    let root = common::fake_root(&std::fs::read_to_string(dir.join("hostd.toml")).unwrap());
    copy_tree(&dir.join("seed"), root.path());
    // Operator inputs are root's alone (git keeps no such mode): as an operator leaves them.
    for svc in hostd::decide::catalog::SERVICES.iter().filter(|s| !s.inputs.is_empty()) {
        let dir = root.path().join(hostd::decide::catalog::input_dir(svc).trim_start_matches('/'));
        for e in std::fs::read_dir(&dir).into_iter().flatten() {
            let p = e.unwrap().path();
            std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        }
    }
    let args: Vec<String> = std::fs::read_to_string(dir.join("args"))
        .unwrap()
        .lines()
        .map(|a| if a == "operator.env" { dir.join(a).to_string_lossy().into_owned() } else { a.to_owned() })
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = common::reconcile(root.path(), &args);
    assert_eq!(run.code, 0, "{case}: {}{}", run.stdout, run.stderr);
    root
}

fn manifest(snap: &std::collections::BTreeMap<PathBuf, Snap>) -> String {
    snap.iter()
        .map(|(p, s)| match s.kind {
            'l' => format!("l {:04o} {} -> {}\n", s.mode, p.display(), String::from_utf8_lossy(&s.content)),
            k => format!("{k} {:04o} {}\n", s.mode, p.display()),
        })
        .collect()
}

/// The creds KEK of the golden seeds (no longer one repeated byte: the real worker refuses that).
const GOLDEN_CREDS_KEK: &str = "078e6b7062990c810fe459557bf8cc617296fc7807192e2553f16c2e98249c76";

#[test]
fn every_case_matches_its_golden_tree() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    for case in CASES {
        let root = converge(case);
        let mut snap = snapshot(root.path());
        // hostd's runtime state (lock, last-run record and report) is not rendered content.
        let runtime = ["var/lib/agentkeys-hostd/state.json", "var/lib/agentkeys-hostd/last-report.json"];
        snap.retain(|p, _| !p.starts_with("run") && !runtime.iter().any(|r| p == Path::new(r)));
        let expected = case_dir(case).join("expected");
        if update {
            let _ = std::fs::remove_dir_all(&expected);
            std::fs::create_dir_all(&expected).unwrap();
            std::fs::write(expected.join("MANIFEST"), manifest(&snap)).unwrap();
            for (p, s) in snap.iter().filter(|(_, s)| s.kind == 'f') {
                let dest = expected.join("tree").join(p);
                std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
                std::fs::write(dest, &s.content).unwrap();
            }
            continue;
        }
        let want = std::fs::read_to_string(expected.join("MANIFEST"))
            .unwrap_or_else(|e| panic!("{case}: no golden MANIFEST ({e}); run with UPDATE_GOLDEN=1"));
        assert_eq!(manifest(&snap), want, "{case}: paths or modes differ from the golden manifest");
        for (p, s) in snap.iter().filter(|(_, s)| s.kind == 'f') {
            let golden = std::fs::read(expected.join("tree").join(p)).unwrap();
            assert_eq!(
                String::from_utf8_lossy(&s.content),
                String::from_utf8_lossy(&golden),
                "{case}: {} differs",
                p.display()
            );
        }
    }
}

fn read(root: &Path, p: &str) -> String {
    std::fs::read_to_string(root.join(p.trim_start_matches('/'))).unwrap()
}

/// Every `Environment=`/env-file line, from every unit and env file of a converged root.
fn env_lines(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for dir in ["etc/systemd/system", "etc/agentkeys"] {
        for e in std::fs::read_dir(root.join(dir)).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "service" || x == "env") {
                let text = std::fs::read_to_string(&p).unwrap();
                let is_unit = p.extension().is_some_and(|x| x == "service");
                let env = text.lines().filter(|l| {
                    !l.starts_with('#') && if is_unit { l.starts_with("Environment=") } else { l.contains('=') }
                });
                out.extend(env.map(|l| format!("{}: {l}", p.display())));
            }
        }
    }
    out
}

#[test]
fn base_stack_uses_base_keys_and_never_heima() {
    let root = converge("base");
    let lines = env_lines(root.path());
    assert!(
        lines
            .iter()
            .any(|l| { l.ends_with("SIDECAR_REGISTRY_ADDRESS_BASE=0x8464135c8F25Da09e49BC8782676a84730C318bC") })
    );
    assert!(lines.iter().any(|l| l.contains("agentkeys-broker.service: Environment=ENTRYPOINT_ADDRESS_BASE=")));
    assert!(lines.iter().any(|l| l.ends_with("AGENTKEYS_CHAIN_RPC_HTTP=https://mainnet.base.org")));
    assert!(!lines.iter().any(|l| l.contains("HEIMA") || l.contains("heima")), "no Heima value on the Base stack");
    let broker = read(root.path(), "/etc/systemd/system/agentkeys-broker.service");
    assert!(broker.contains("Environment=BROKER_OIDC_ISSUER=https://broker-base.litentry.org\n"));
    assert!(!broker.contains("AGENTKEYS_ACCEPT_ALLOW_ADDR_OVERRIDE"), "prod-posture stack");
}

#[test]
fn test_stacks_allow_addr_override_and_no_line_is_empty() {
    for case in CASES {
        let root = converge(case);
        for l in env_lines(root.path()) {
            assert!(!l.ends_with('='), "{case}: empty value line {l}");
        }
        let broker = read(root.path(), "/etc/systemd/system/agentkeys-broker.service");
        let is_test = case.starts_with("test");
        assert_eq!(broker.contains("Environment=AGENTKEYS_ACCEPT_ALLOW_ADDR_OVERRIDE=1\n"), is_test, "{case}");
        // Heima's EntryPoint comes from the upstream chain profile when configuration names none.
        assert_eq!(broker.contains("ENTRYPOINT_ADDRESS_HEIMA="), case != "base", "{case}");
    }
}

#[test]
fn adopted_host_keeps_identity_settings_secrets_and_certificates() {
    let root = converge("prod-adopted-https");
    let r = root.path();
    let broker = read(r, "/etc/systemd/system/agentkeys-broker.service");
    assert!(broker.contains("Environment=BROKER_OIDC_ISSUER=https://broker.litentry.org\n"));
    assert!(
        broker.contains("Environment=AGENTKEYS_CHAIN_RPC_HTTP=https://rpc.heima.example.net/old\n"),
        "RPC kept from the old unit"
    );
    assert_eq!(
        read(r, "/etc/agentkeys/dev-key-service.env"),
        read(&case_dir("prod-adopted-https").join("seed"), "/etc/agentkeys/dev-key-service.env")
    );
    assert!(
        read(r, "/etc/agentkeys/worker-creds.env").contains(&format!("AGENTKEYS_WORKER_KEK_HEX={GOLDEN_CREDS_KEK}\n"))
    );
    let vhost = read(r, "/etc/nginx/sites-available/broker.litentry.org.conf");
    assert!(vhost.contains("ssl_certificate /etc/letsencrypt/live/broker.litentry.org/fullchain.pem;"), "{vhost}");
    let email = read(r, "/etc/nginx/sites-available/email.litentry.org.conf");
    assert!(email.contains("return 503") && !email.contains("443"), "no certificate → placeholder");
    assert!(
        !r.join("etc/nginx/sites-enabled/default").exists()
            && std::fs::symlink_metadata(r.join("etc/nginx/sites-enabled/default")).is_err()
    );
}

/// What systemd would start for `svc` in a converged root: the binary's name, its arguments and its
/// whole environment (`Environment=`, every `EnvironmentFile=`, and the PEM hostd's wrapper injects).
fn launch(
    root: &Path,
    svc: &hostd::decide::catalog::Service,
) -> (String, Vec<String>, std::collections::BTreeMap<String, String>) {
    let unit = read(root, &format!("/etc/systemd/system/{}.service", svc.unit));
    let mut env = hostd::decide::unitfile::service_environment(&unit);
    let exec = unit.lines().find_map(|l| l.strip_prefix("ExecStart=")).expect("ExecStart");
    let mut words: Vec<String> = exec.split_whitespace().map(str::to_owned).collect();
    if words.get(1).is_some_and(|w| w == "exec-with-pubkey") {
        if let Some(i) = words.iter().position(|w| w == "--env") {
            env.insert(words[i + 1].clone(), "-----BEGIN PUBLIC KEY-----\n…\n-----END PUBLIC KEY-----\n".into());
        }
        let dashdash = words.iter().position(|w| w == "--").expect("the wrapper ends its options with --");
        words.drain(..=dashdash);
    }
    for file in unit.lines().filter_map(|l| l.strip_prefix("EnvironmentFile=")) {
        let (optional, path) = file.strip_prefix('-').map_or((false, file), |p| (true, p));
        match std::fs::read_to_string(root.join(path.trim_start_matches('/'))) {
            Ok(text) => env.extend(
                text.lines()
                    .filter(|l| !l.starts_with('#'))
                    .filter_map(|l| l.split_once('='))
                    .map(|(k, v)| (k.to_owned(), v.to_owned())),
            ),
            Err(e) => assert!(optional, "{}: {path}: {e}", svc.unit),
        }
    }
    let binary = Path::new(&words[0]).file_name().unwrap().to_string_lossy().into_owned();
    (binary, words[1..].to_vec(), env)
}

/// Where the file a launched service reads at `path` lives in the converged root: a systemd
/// credential's source (its `LoadCredential=` line), else the path itself.
fn file_behind(root: &Path, unit_text: &str, unit: &str, path: &str) -> PathBuf {
    let cred_dir = format!("/run/credentials/{unit}.service/");
    let source = path.strip_prefix(&cred_dir).and_then(|id| {
        unit_text
            .lines()
            .filter_map(|l| l.strip_prefix("LoadCredential="))
            .find_map(|l| l.strip_prefix(&format!("{id}:")).map(str::to_owned))
    });
    root.join(source.as_deref().unwrap_or(path).trim_start_matches('/'))
}

/// How `svc` as rendered in `root` deviates from its upstream contract: a start refusal, a bind
/// other than the catalog's loopback port, another health answer, a probe shorter than the
/// slowest healthy answer, a shutdown grace past the stop timeout, or a file it reads at start
/// that is absent (where not allowed) or not the JSON it must be.
fn contract_deviations(case: &str, root: &Path, svc: &hostd::decide::catalog::Service) -> Vec<String> {
    use hostd::decide::catalog::{Health, STOP_TIMEOUT_SECS};
    use hostd::decide::contracts::{self, HealthBody};
    let (binary, args, env) = launch(root, svc);
    let c = contracts::contract(&binary, &args).unwrap_or_else(|| panic!("{case}: {binary} has no contract"));
    let get = |k: &str| env.get(k).cloned();
    let at = format!("{case}: {} ({binary} {})", svc.unit, args.join(" "));
    let mut out = Vec::new();
    if let Some(e) = contracts::start_error(c, &args, &get) {
        out.push(format!("{at} would exit at start: {e}"));
    }
    // A binary that listens on all interfaces is confined to loopback by systemd's IP filter.
    let host = if svc.loopback_ip_only { "0.0.0.0" } else { "127.0.0.1" };
    let bind = contracts::bind_address(c, &args, &get);
    if bind != format!("{host}:{}", svc.port) {
        out.push(format!("{at} binds {bind}"));
    }
    let body = match svc.health {
        Health::PlainOk => HealthBody::PlainOk,
        Health::JsonOk => HealthBody::JsonOk,
        Health::JsonReady => HealthBody::JsonReady,
    };
    if body != c.health {
        out.push(format!("{at}: hostd judges /healthz by another answer"));
    }
    if svc.probe_timeout_secs <= c.health_max_secs {
        out.push(format!("{at}: the probe gives up before a healthy answer"));
    }
    if let Some((var, default)) = c.shutdown_grace {
        let grace = env.get(var).map_or(default, |v| v.parse().unwrap());
        if grace + 5 > STOP_TIMEOUT_SECS {
            out.push(format!("{at}: a {grace} s grace ends in SIGKILL at {STOP_TIMEOUT_SECS} s"));
        }
    }
    let unit_text = read(root, &format!("/etc/systemd/system/{}.service", svc.unit));
    for f in c.files {
        let Some(path) = env.get(f.name) else { continue };
        let behind = file_behind(root, &unit_text, svc.unit, path);
        match std::fs::read(&behind) {
            Err(_) if f.absent_ok => {}
            Err(e) => out.push(format!("{at}: {} = {path}: {e}", f.name)),
            Ok(b) if f.json && serde_json::from_slice::<serde_json::Value>(&b).is_err() => {
                out.push(format!("{at}: {} = {path} is not JSON", f.name))
            }
            Ok(_) => {}
        }
    }
    out
}

/// The catalog against the upstream contracts: every rendered unit of every case starts its
/// binary the way the real binary accepts (see [`contract_deviations`]).
#[test]
fn every_rendered_unit_meets_its_upstream_contract() {
    for case in CASES {
        let root = converge(case);
        for svc in hostd::decide::catalog::SERVICES {
            if svc.optional && !root.path().join(format!("etc/systemd/system/{}.service", svc.unit)).exists() {
                continue; // not running on this host (the optional cases render them)
            }
            let found = contract_deviations(case, root.path(), svc);
            assert!(found.is_empty(), "{}", found.join("\n"));
        }
    }
}

/// The contract check catches deviations: a transport that needs other inputs, a bind on every
/// interface, a credential whose source is gone, a seed that is not JSON.
#[test]
fn a_deviation_from_a_contract_fails_the_check() {
    use hostd::decide::catalog::{GATE, GATEWAY, MCP_SERVER, service};
    let case = "prod-optional-on";
    let root = converge(case);
    let edit = |path: &str, from: &str, to: &str| {
        let p = root.path().join(path);
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.contains(from), "{path} has no {from}");
        std::fs::write(&p, text.replace(from, to)).unwrap();
    };
    edit("etc/agentkeys/worker-channel-weixin.env", "TRANSPORT=telegram", "TRANSPORT=oa");
    edit("etc/agentkeys/mcp-server.env", "MCP_LISTEN=127.0.0.1:8088\n", "");
    std::fs::remove_file(root.path().join("etc/agentkeys/gate/upstream-api-key")).unwrap();
    std::fs::write(root.path().join("var/lib/agentkeys/gate/keys.json"), "{\"keys\": [").unwrap();
    let gw = contract_deviations(case, root.path(), service(GATEWAY).unwrap()).join("\n");
    assert!(gw.contains("would exit at start: AGENTKEYS_WEIXIN_TOKEN must be set"), "{gw}");
    let mcp = contract_deviations(case, root.path(), service(MCP_SERVER).unwrap()).join("\n");
    assert!(mcp.contains("binds 0.0.0.0:8088"), "{mcp}");
    let gate = contract_deviations(case, root.path(), service(GATE).unwrap());
    assert_eq!(gate.len(), 2, "{gate:?}");
    assert!(gate[0].contains("AGENTKEYS_GATE_UPSTREAM_API_KEY_FILE"), "{gate:?}");
    assert!(gate[1].contains("AGENTKEYS_GATE_KEYS_FILE = /var/lib/agentkeys/gate/keys.json is not JSON"), "{gate:?}");
}
