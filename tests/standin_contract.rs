//! The stand-in against the upstream contracts (agent/src/decide/contracts.rs, read at the commit it names):
//! run as each binary on loopback, it must refuse to start exactly when and how the real binary
//! does, bind where it binds, answer `/healthz` as it does and stop as it stops. The literal facts
//! below (415/422/401, a 3 s RPC bound, a grace served after SIGTERM) are the upstream behaviour
//! itself, so a fixture that drifts from it fails here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hostd::decide::contracts::{self, CONTRACTS, Contract, HealthBody};

/// A real P-256 public key in SubjectPublicKeyInfo PEM (made with openssl for this test).
const P256_PEM: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEYK5PMb+Ef2qc8SFe3y/MD4bzmXiP
kildeR8D/7GdSljghywFQBA9Yf1uKL2IRxJAqNam7ivgVs6umBgAG1lrkQ==
-----END PUBLIC KEY-----
";

const KEK: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";

/// The stand-in under `name` in a fresh directory: a symlink (it serves the name it is run as), so
/// no test thread ever holds a writable descriptor of an executable another thread runs (ETXTBSY).
fn as_binary(dir: &Path, name: &str) -> PathBuf {
    let to = dir.join(name);
    if !to.exists() {
        std::os::unix::fs::symlink(common::container::standin(), &to).unwrap();
    }
    to
}

/// A complete, valid environment for `c` (every variable it names set and well-formed, every file
/// it reads written into `dir`), bound to `port`. A file variable that only stands in for another
/// variable (the gate's `…_FILE` key) is left unset, so removing that variable is a refusal.
fn full_env(c: &Contract, port: u16, dir: &Path) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for v in c.env {
        let name = v.name.replace("{CHAIN}", "HEIMA");
        let value = match v.rule {
            contracts::Rule::Kek | contracts::Rule::Hex32 => KEK.to_owned(),
            contracts::Rule::Seconds => "1".into(),
            contracts::Rule::Https => "https://broker.example.org".into(),
            contracts::Rule::OneOf(words) => words[0].into(),
            contracts::Rule::Pairs => "vendor:token".into(),
            _ => "x".into(),
        };
        env.insert(name, value);
    }
    for f in c.files.iter().filter(|f| !c.env.iter().any(|v| v.alternates.contains(&f.name))) {
        let path = dir.join(format!("{}-{}", c.binary, f.name));
        std::fs::write(&path, if f.json { "{}" } else { "secret\n" }).unwrap();
        env.insert(f.name.into(), path.display().to_string());
    }
    if let contracts::Bind::Env { var, .. } = c.bind {
        env.insert(var.into(), format!("127.0.0.1:{port}"));
    }
    env
}

fn args_for(c: &Contract, port: u16, dir: &Path) -> Vec<String> {
    let mut a: Vec<String> = c.mode.map(str::to_owned).into_iter().collect();
    if let contracts::Bind::PortArg { host_flag, .. } = c.bind {
        a.extend(["--port".into(), port.to_string()]);
        if host_flag {
            a.extend(["--bind".into(), "127.0.0.1".into()]);
        }
    }
    if c.mode == Some("--signer-only") {
        let pem = dir.join("session.pub.pem");
        std::fs::write(&pem, P256_PEM).unwrap();
        a.extend(["--broker-session-pubkey-path".into(), pem.display().to_string()]);
    }
    a
}

fn spawn(bin: &Path, args: &[String], env: &BTreeMap<String, String>) -> Child {
    Command::new(bin)
        .args(args)
        .env_clear()
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn http(port: u16, head: &str, body: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "{head}\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default()))
}

fn wait_healthz(port: u16) -> (u16, String) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(a) = http(port, "GET /healthz HTTP/1.1", "") {
            return a;
        }
        assert!(Instant::now() < deadline, "nothing answered on 127.0.0.1:{port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn stop(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// A running stand-in, killed when the test ends however it ends (a failed assertion included).
struct Running(Option<Child>);

impl Running {
    fn id(&self) -> u32 {
        self.0.as_ref().map_or(0, Child::id)
    }

    fn take(mut self) -> Child {
        self.0.take().unwrap()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            stop(c);
        }
    }
}

#[test]
fn each_contract_refuses_what_the_real_binary_refuses_and_serves_its_health() {
    let dir = tempfile::tempdir().unwrap();
    for (i, c) in CONTRACTS.iter().enumerate() {
        let port = 39100 + i as u16;
        let bin = as_binary(dir.path(), c.binary);
        let args = args_for(c, port, dir.path());
        let what = format!("{} {}", c.binary, c.mode.unwrap_or(""));
        // Every required variable, one at a time: the real exit status and message.
        for v in c.env.iter().filter(|v| v.required) {
            let mut env = full_env(c, port, dir.path());
            env.remove(&v.name.replace("{CHAIN}", "HEIMA"));
            if let Some(cond) = v.only_if {
                env.insert(cond.var.into(), cond.values[0].into());
            }
            let out = spawn(&bin, &args, &env).wait_with_output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(c.exit_code), "{what} without {}: {stderr}", v.name);
            assert!(stderr.contains(&v.message.replace("{CHAIN}", "HEIMA")), "{what} without {}: {stderr}", v.name);
        }
        // A KEK of one repeated byte is a placeholder the workers refuse.
        for v in c.env.iter().filter(|v| v.rule == contracts::Rule::Kek) {
            let mut env = full_env(c, port, dir.path());
            env.insert(v.name.into(), "ab".repeat(32));
            let out = spawn(&bin, &args, &env).wait_with_output().unwrap();
            assert_eq!(out.status.code(), Some(c.exit_code), "{what}: placeholder {} accepted", v.name);
        }
        // Complete: it binds where the contract says and answers its health.
        let child = Running(Some(spawn(&bin, &args, &full_env(c, port, dir.path()))));
        let (status, body) = wait_healthz(port);
        drop(child);
        assert_eq!(status, 200, "{what}: {body}");
        let compact: String = body.chars().filter(|c| !c.is_whitespace()).collect();
        match c.health {
            HealthBody::PlainOk => assert_eq!(body, "ok", "{what}"),
            HealthBody::JsonOk => assert!(compact.contains("\"ok\":true"), "{what}: {body}"),
            HealthBody::JsonReady => {
                assert!(compact.contains("\"ok\":true") && compact.contains("\"ready\":"), "{what}: {body}")
            }
        }
    }
}

#[test]
fn the_signer_loads_only_a_p256_public_key() {
    let dir = tempfile::tempdir().unwrap();
    let c = contracts::contract("agentkeys-mock-server", &["--signer-only".into()]).unwrap();
    let bin = as_binary(dir.path(), c.binary);
    let args = args_for(c, 39093, dir.path());
    let pem = dir.path().join("session.pub.pem");
    let rsa = "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA\n-----END PUBLIC KEY-----\n";
    for bad in ["", "-----BEGIN PUBLIC KEY-----\nnot base64!\n-----END PUBLIC KEY-----\n", rsa] {
        std::fs::write(&pem, bad).unwrap();
        let out = spawn(&bin, &args, &full_env(c, 39093, dir.path())).wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {stderr}");
        assert!(stderr.contains("cannot load broker session pubkey"), "{stderr}");
    }
}

#[test]
fn the_broker_exports_a_p256_public_key_pem() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let c = contracts::contract("agentkeys-broker-server", &[]).unwrap();
    let bin = as_binary(dir.path(), c.binary);
    let keypair = dir.path().join("session.json");
    std::fs::write(&keypair, "{}").unwrap();
    let out_pem = dir.path().join("exported.pub.pem");
    let mut args = args_for(c, 39094, dir.path());
    args.extend(["--export-session-pubkey-to".into(), out_pem.display().to_string()]);
    let mut env = full_env(c, 39094, dir.path());
    env.insert("BROKER_SESSION_KEYPAIR_PATH".into(), keypair.display().to_string());
    let child = Running(Some(spawn(&bin, &args, &env)));
    wait_healthz(39094);
    drop(child);
    let text = std::fs::read_to_string(&out_pem).unwrap();
    assert!(hostd::decide::pubkey::parse_public_key_pem(&text).is_ok(), "{text}");
    let verify =
        Command::new("openssl").args(["pkey", "-pubin", "-noout", "-text", "-in"]).arg(&out_pem).output().unwrap();
    let described = String::from_utf8_lossy(&verify.stdout);
    assert!(verify.status.success() && described.contains("prime256v1"), "openssl reads a P-256 key: {described}");
    assert_eq!(std::fs::metadata(&out_pem).unwrap().permissions().mode() & 0o777, 0o644, "readable by the signer");
}

#[test]
fn the_broker_checks_the_claim_body_before_auth_and_serves_through_its_grace() {
    let dir = tempfile::tempdir().unwrap();
    let c = contracts::contract("agentkeys-broker-server", &[]).unwrap();
    let port = 39090;
    let bin = as_binary(dir.path(), c.binary);
    let mut env = full_env(c, port, dir.path());
    env.insert("BROKER_SHUTDOWN_GRACE_SECONDS".into(), "2".into());
    let child = Running(Some(spawn(&bin, &args_for(c, port, dir.path()), &env)));
    wait_healthz(port);
    let post = "POST /v1/agent/pairing/claim HTTP/1.1";
    assert_eq!(http(port, post, "").unwrap().0, 415, "no JSON content type");
    let json = format!("{post}\r\nContent-Type: application/json");
    assert_eq!(http(port, &json, "{}").unwrap().0, 422, "JSON without the claim's fields");
    let probe = hostd::host::health::CLAIM_PROBE_BODY;
    assert_eq!(http(port, &json, probe).unwrap().0, 401, "hostd's probe: well-formed, no session");

    // SIGTERM: still serving during the grace, gone soon after it.
    let t = Instant::now();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(http(port, "GET /healthz HTTP/1.1", "").map(|a| a.0), Some(200), "serves on during its grace");
    let out = child.take().wait_with_output().unwrap();
    let took = t.elapsed();
    assert!(out.status.success(), "{out:?}");
    assert!(took >= Duration::from_secs(2) && took < Duration::from_secs(4), "exit after the 2 s grace, took {took:?}");
}

#[test]
fn the_bundler_refuses_a_chain_without_a_chain_id() {
    let dir = tempfile::tempdir().unwrap();
    let c = contracts::contract("agentkeys-bundler", &[]).unwrap();
    let bin = as_binary(dir.path(), c.binary);
    let mut env = full_env(c, 39095, dir.path());
    env.insert("AGENTKEYS_CHAIN".into(), "my-l2".into());
    let out = spawn(&bin, &[], &env).wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("bundler chain id unresolved"), "{stderr}");
    env.insert("AGENTKEYS_CHAIN_ID_MY_L2".into(), "777".into());
    let child = Running(Some(spawn(&bin, &[], &env)));
    assert_eq!(wait_healthz(39095).0, 200, "an explicit chain id starts it");
    drop(child);
}

#[test]
fn the_bundler_health_waits_for_its_rpc_up_to_three_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let c = contracts::contract("agentkeys-bundler", &[]).unwrap();
    // An RPC that accepts and never answers.
    let rpc = TcpListener::bind("127.0.0.1:0").unwrap();
    let rpc_port = rpc.local_addr().unwrap().port();
    // Keep each accepted connection open, unanswered, until the test ends.
    let hold = std::thread::spawn(move || rpc.incoming().take(1).flatten().collect::<Vec<_>>());
    let port = 39091;
    let mut env = full_env(c, port, dir.path());
    env.insert("AGENTKEYS_CHAIN_RPC_HTTP".into(), format!("http://127.0.0.1:{rpc_port}"));
    env.insert("ENTRYPOINT_ADDRESS_HEIMA".into(), "0x0000000071727De22E5E9d8BAf0edAc6f37da032".into());
    env.insert("AGENTKEYS_BUNDLER_SIGNER_KEY".into(), KEK.into());
    let child = Running(Some(spawn(&as_binary(dir.path(), c.binary), &[], &env)));
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the bundler stand-in never listened");
        std::thread::sleep(Duration::from_millis(50));
    }
    let t = Instant::now();
    let (status, body) = http(port, "GET /healthz HTTP/1.1", "").unwrap();
    let took = t.elapsed();
    drop(child);
    let _ = hold.join();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"ready\":true"), "an unreadable balance fails open: {body}");
    assert!(took >= Duration::from_millis(2900) && took < Duration::from_secs(c.health_max_secs + 1), "{took:?}");
    let svc = hostd::decide::catalog::service("agentkeys-bundler").unwrap();
    assert!(Duration::from_secs(svc.probe_timeout_secs) > took, "hostd's probe outlasts the bundler's slowest answer");
}

/// One start of `name` with the complete environment changed by `set` (an empty value removes the
/// variable): `Ok(health body)` when it serves, `Err((exit status, stderr))` when it refuses.
fn start_with(bin: &Path, port: u16, dir: &Path, set: &[(&str, String)]) -> Result<String, (Option<i32>, String)> {
    let name = bin.file_name().unwrap().to_string_lossy().into_owned();
    let c = contracts::contract(&name, &[]).unwrap();
    let mut env = full_env(c, port, dir);
    // Where the channel gateway keeps its state (upstream's defaults are under /var/lib).
    for (k, f) in [("AGENTKEYS_WEIXIN_HISTORY_FILE", "history"), ("AGENTKEYS_WEIXIN_ACTIVITY_FILE", "activity")] {
        env.insert(k.into(), dir.join(f).display().to_string());
    }
    env.insert("AGENTKEYS_TELEGRAM_STATE_FILE".into(), dir.join("tg-state").display().to_string());
    // Nothing may dial out: any transport loop that did would find only a closed loopback port.
    env.insert("AGENTKEYS_TELEGRAM_API_BASE".into(), "http://127.0.0.1:9".into());
    env.insert("AGENTKEYS_WEIXIN_ILINK_BASE_URL".into(), "http://127.0.0.1:9".into());
    env.insert("AGENTKEYS_WEIXIN_ILINK_BOOTSTRAP_URL".into(), "http://127.0.0.1:9".into());
    env.insert("AGENTKEYS_INFERENCE_CREDS_DIR".into(), dir.join("inference").display().to_string());
    for (k, v) in set {
        if v.is_empty() {
            env.remove(*k);
        } else {
            env.insert((*k).into(), v.clone());
        }
    }
    let mut child = Running(Some(spawn(bin, &[], &env)));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some((200, body)) = http(port, "GET /healthz HTTP/1.1", "") {
            return Ok(body);
        }
        if let Some(c) = child.0.as_mut()
            && c.try_wait().unwrap().is_some()
        {
            let out = child.take().wait_with_output().unwrap();
            return Err((out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned()));
        }
        assert!(Instant::now() < deadline, "{name}: neither served nor exited in 20 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The inputs of the MCP server, the gate and the channel gateway (read at the contracts' commit),
/// each case run against `bin_of(name)`: the stand-in here, the real binary in the ignored twin.
fn the_operator_input_cases(bin_of: &dyn Fn(&str) -> PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let missing = d.join("absent").display().to_string();
    let garbage = d.join("garbage");
    std::fs::write(&garbage, "not json {").unwrap();
    let garbage = garbage.display().to_string();
    let refused = |r: Result<String, (Option<i32>, String)>, want: &str, what: &str| match r {
        Err((code, stderr)) => {
            assert_eq!(code, Some(1), "{what}: {stderr}");
            assert!(stderr.contains(want), "{what}: wanted {want:?} in {stderr}");
        }
        Ok(body) => panic!("{what}: started (healthz {body}), the contract says it refuses"),
    };
    let mcp = bin_of("agentkeys-mcp-server");
    let body = start_with(&mcp, 39120, d, &[]).unwrap();
    assert!(body.replace(' ', "").contains("\"ok\":true"), "mcp healthz: {body}");
    let tokens = [("MCP_VENDOR_TOKENS", "vendor-without-a-colon".to_owned())];
    refused(start_with(&mcp, 39120, d, &tokens), "malformed vendor_token entry", "mcp, malformed tokens");
    let bearer = [("MCP_AGENT_SESSION_BEARER_FILE", missing.clone())];
    refused(start_with(&mcp, 39120, d, &bearer), "read --agent-session-bearer-file", "mcp, bearer file absent");
    let endpoint = [("MCP_TRANSPORT", "mcp-endpoint".to_owned()), ("MCP_ENDPOINT", String::new())];
    refused(start_with(&mcp, 39120, d, &endpoint), "requires --mcp-endpoint", "mcp, relay without its URL");
    refused(start_with(&mcp, 39120, d, &[("MCP_TRANSPORT", "smoke".into())]), "unknown transport", "mcp, transport");

    let gate = bin_of("agentkeys-gate");
    assert_eq!(start_with(&gate, 39121, d, &[]).unwrap(), "ok");
    let no_key = [("AGENTKEYS_GATE_UPSTREAM_API_KEY", String::new())];
    refused(start_with(&gate, 39121, d, &no_key), "no upstream API key", "gate without a key");
    let key_file =
        [("AGENTKEYS_GATE_UPSTREAM_API_KEY", String::new()), ("AGENTKEYS_GATE_UPSTREAM_API_KEY_FILE", missing.clone())];
    refused(start_with(&gate, 39121, d, &key_file), "reading upstream api key file", "gate, key file absent");
    let key_file_ok = std::fs::write(d.join("ark-key"), "sk-test\n").map(|()| d.join("ark-key").display().to_string());
    let via_file = [
        ("AGENTKEYS_GATE_UPSTREAM_API_KEY", String::new()),
        ("AGENTKEYS_GATE_UPSTREAM_API_KEY_FILE", key_file_ok.unwrap()),
    ];
    assert_eq!(start_with(&gate, 39121, d, &via_file).unwrap(), "ok", "gate, key from its file");
    refused(
        start_with(&gate, 39121, d, &[("AGENTKEYS_GATE_KEYS_FILE", missing.clone())]),
        "reading keys file",
        "gate, keys",
    );
    refused(
        start_with(&gate, 39121, d, &[("AGENTKEYS_GATE_KEYS_FILE", garbage.clone())]),
        "parsing keys file",
        "gate, keys",
    );

    let gw = bin_of("agentkeys-worker-channel-weixin");
    let body = start_with(&gw, 39122, d, &[]).unwrap();
    assert!(body.replace(' ', "").contains("\"ok\":true"), "gateway healthz: {body}");
    let telegram = |extra: &[(&'static str, String)]| {
        let mut v = vec![
            ("AGENTKEYS_WEIXIN_TRANSPORT", "telegram".to_owned()),
            ("AGENTKEYS_WEIXIN_TOKEN", String::new()),
            ("AGENTKEYS_WEIXIN_APP_ID", String::new()),
            ("AGENTKEYS_TELEGRAM_BOT_TOKEN_FILE", String::new()),
        ];
        v.extend_from_slice(extra);
        v
    };
    let registry_absent = telegram(&[("AGENTKEYS_WEIXIN_CONTACT_REGISTRY_FILE", missing.clone())]);
    assert!(start_with(&gw, 39122, d, &registry_absent).is_ok(), "gateway: an absent registry is a first boot");
    let registry_garbage = telegram(&[("AGENTKEYS_WEIXIN_CONTACT_REGISTRY_FILE", garbage.clone())]);
    refused(start_with(&gw, 39122, d, &registry_garbage), "parsing contact registry", "gateway, registry");
    let token_absent = telegram(&[("AGENTKEYS_TELEGRAM_BOT_TOKEN_FILE", missing.clone())]);
    refused(start_with(&gw, 39122, d, &token_absent), "AGENTKEYS_TELEGRAM_BOT_TOKEN_FILE", "gateway, bot token file");
    refused(
        start_with(&gw, 39122, d, &[("AGENTKEYS_WEIXIN_APP_ID", String::new())]),
        "AGENTKEYS_WEIXIN_APP_ID must be set",
        "oa",
    );
    let omni = telegram(&[("AGENTKEYS_WEIXIN_OPERATOR_OMNI", String::new())]);
    refused(start_with(&gw, 39122, d, &omni), "AGENTKEYS_WEIXIN_OPERATOR_OMNI must be set", "gateway, omni");
    refused(start_with(&gw, 39122, d, &[("AGENTKEYS_WEIXIN_TRANSPORT", "smoke".into())]), "is not a transport", "gw");
}

#[test]
fn the_stand_in_keeps_the_operator_input_contracts_of_mcp_gate_and_gateway() {
    let dir = tempfile::tempdir().unwrap();
    the_operator_input_cases(&|name| as_binary(dir.path(), name));
}

#[test]
#[ignore = "needs AGENTKEYS_REAL_BIN_DIR with the upstream binaries; not in CI"]
fn the_real_binaries_keep_the_same_operator_input_contracts() {
    let dir = std::env::var_os("AGENTKEYS_REAL_BIN_DIR").expect("AGENTKEYS_REAL_BIN_DIR names the upstream binaries");
    the_operator_input_cases(&|name| Path::new(&dir).join(name));
}
