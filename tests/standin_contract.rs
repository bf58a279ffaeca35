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

/// A complete, valid environment for `c` (every variable it names set and well-formed), bound to `port`.
fn full_env(c: &Contract, port: u16) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for v in c.env {
        let name = v.name.replace("{CHAIN}", "HEIMA");
        let value = match v.rule {
            contracts::Rule::Kek | contracts::Rule::Hex32 => KEK.to_owned(),
            contracts::Rule::Seconds => "1".into(),
            contracts::Rule::Https => "https://broker.example.org".into(),
            _ => "x".into(),
        };
        env.insert(name, value);
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
            let mut env = full_env(c, port);
            env.remove(&v.name.replace("{CHAIN}", "HEIMA"));
            let out = spawn(&bin, &args, &env).wait_with_output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(c.exit_code), "{what} without {}: {stderr}", v.name);
            assert!(stderr.contains(&v.message.replace("{CHAIN}", "HEIMA")), "{what} without {}: {stderr}", v.name);
        }
        // A KEK of one repeated byte is a placeholder the workers refuse.
        for v in c.env.iter().filter(|v| v.rule == contracts::Rule::Kek) {
            let mut env = full_env(c, port);
            env.insert(v.name.into(), "ab".repeat(32));
            let out = spawn(&bin, &args, &env).wait_with_output().unwrap();
            assert_eq!(out.status.code(), Some(c.exit_code), "{what}: placeholder {} accepted", v.name);
        }
        // Complete: it binds where the contract says and answers its health.
        let child = Running(Some(spawn(&bin, &args, &full_env(c, port))));
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
        let out = spawn(&bin, &args, &full_env(c, 39093)).wait_with_output().unwrap();
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
    let mut env = full_env(c, 39094);
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
    let mut env = full_env(c, port);
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
    let mut env = full_env(c, 39095);
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
    let mut env = full_env(c, port);
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
