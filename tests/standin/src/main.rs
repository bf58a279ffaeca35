//! Stand-in for the AgentKeys service binaries in container tests. Installed under each service's
//! binary name, it keeps that binary's upstream contract (agent/src/decide/contracts.rs, compiled in
//! here): refuses to start with the real message and exit status when a required variable is
//! missing or a KEK is a placeholder, binds where the real one binds, answers `/healthz` as it
//! does (the bundler asks its RPC, bounded by 3 s), and the broker answers `keygen`, OIDC
//! discovery, JWKS, the pairing claim (415 without a JSON body, 422 without its fields, 401 without
//! a session) and serves on for its shutdown grace after SIGTERM. A file `<binary>.fail-health`
//! next to the binary, or the bytes `standin:fail-health` appended to the executable itself (a
//! release whose service is broken), make `/healthz` answer 500.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

mod signer;

#[path = "../../../agent/src/decide/contracts.rs"]
#[allow(dead_code)]
mod contracts;

/// Every service binary name this fixture stands in for (the catalog's; `tests/host_converge.rs`
/// checks the two agree).
const NAMES: [&str; 13] = [
    "agentkeys-broker-server",
    "agentkeys-bundler",
    "agentkeys-gate",
    "agentkeys-mcp-server",
    "agentkeys-mock-server",
    "agentkeys-worker-audit",
    "agentkeys-worker-channel",
    "agentkeys-worker-channel-weixin",
    "agentkeys-worker-classify",
    "agentkeys-worker-config",
    "agentkeys-worker-creds",
    "agentkeys-worker-email",
    "agentkeys-worker-memory",
];

fn fail(msg: &str) -> ! {
    eprintln!("standin: {msg}");
    std::process::exit(1);
}

/// A refused start as the real binary reports it.
fn refuse(c: &contracts::Contract, msg: &str) -> ! {
    eprintln!("Error: {msg}");
    std::process::exit(c.exit_code);
}

fn arg_after(args: &[String], flag: &str) -> Option<String> {
    args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned()
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn random_hex() -> String {
    let mut buf = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .unwrap_or_else(|e| fail(&format!("urandom: {e}")));
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// As `agentkeys-standin`: `names` prints them; `install DIR` copies this executable to DIR under
/// each name (mode 0755), so a test host's setup needs no list of its own.
/// The binaries of optional services: `install` leaves them out unless `--all` is given, as a
/// release may (the catalog's `optional`).
const OPTIONAL: [&str; 4] =
    ["agentkeys-worker-channel", "agentkeys-mcp-server", "agentkeys-gate", "agentkeys-worker-channel-weixin"];

fn fixture_command(args: &[String]) -> ! {
    use std::os::unix::fs::PermissionsExt;
    let all = args.get(2).is_some_and(|a| a == "--all");
    let dir = if all { args.get(3) } else { args.get(2) };
    match (args.get(1).map(String::as_str), dir) {
        (Some("names"), None) => NAMES.iter().for_each(|n| println!("{n}")),
        (Some("install"), Some(dir)) => {
            let me = std::env::current_exe().unwrap_or_else(|e| fail(&format!("own executable: {e}")));
            for n in NAMES.iter().filter(|n| all || !OPTIONAL.contains(n)) {
                let to = Path::new(dir).join(n);
                std::fs::copy(&me, &to)
                    .and_then(|_| std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o755)))
                    .unwrap_or_else(|e| fail(&format!("installing {}: {e}", to.display())));
            }
        }
        _ => fail("as agentkeys-standin: `names` or `install [--all] DIR`; installed under a service's name it serves"),
    }
    std::process::exit(0);
}

/// `keygen --purpose P --out PATH`: writes 0600, refuses to overwrite (like the real binary).
fn keygen(args: &[String]) -> ! {
    use std::os::unix::fs::OpenOptionsExt;
    let purpose = arg_after(args, "--purpose").unwrap_or_else(|| fail("keygen needs --purpose"));
    let out = arg_after(args, "--out").unwrap_or_else(|| fail("keygen needs --out"));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&out)
        .unwrap_or_else(|e| fail(&format!("refusing to write {out}: {e}")));
    writeln!(f, "{{\"purpose\":\"{purpose}\",\"private_key\":\"{}\"}}", random_hex())
        .unwrap_or_else(|e| fail(&e.to_string()));
    std::process::exit(0);
}

struct Reply {
    status: u16,
    body: String,
}

/// One request as the stand-in sees it.
struct Req {
    method: String,
    path: String,
    content_type: Option<String>,
    authorization: bool,
    body: String,
}

fn reply(status: u16, body: impl Into<String>) -> Reply {
    Reply { status, body: body.into() }
}

#[derive(Clone)]
struct Service {
    name: String,
    contract: &'static contracts::Contract,
    marker: PathBuf,
    broken_build: bool,
    issuer: String,
}

/// The broker's pairing claim without a session: the body is checked before auth.
fn claim(r: &Req) -> Reply {
    if !r.content_type.as_deref().is_some_and(|t| t.starts_with("application/json")) {
        return reply(415, "Expected request with `Content-Type: application/json`");
    }
    let field = |f: &str| r.body.contains(&format!("\"{f}\""));
    if !r.body.trim_start().starts_with('{') {
        return reply(400, "Failed to parse the request body as JSON");
    }
    if !field("pairing_code") || !field("label") {
        return reply(422, "Failed to deserialize the JSON body into the target type: missing field");
    }
    if !r.authorization {
        return reply(401, "{\"error\":\"unauthorized\"}");
    }
    reply(403, "{\"error\":\"stand-in has no sessions\"}")
}

/// The bundler's health: degraded without a submitter key or EntryPoint; with both and a known gas
/// floor it asks the RPC for the submitter's balance (loopback http only here), bounded by the
/// contract's time, and answers ready when the answer cannot be read (fail-open).
fn bundler_health(c: &contracts::Contract) -> Reply {
    let chain = env("AGENTKEYS_CHAIN").unwrap_or_else(|| "heima".into());
    let entry =
        env(&format!("ENTRYPOINT_ADDRESS_{}", contracts::env_suffix(&chain))).or_else(|| env("ENTRYPOINT_ADDRESS"));
    let key = env("AGENTKEYS_BUNDLER_SIGNER_KEY").or_else(|| env("BROKER_SPONSOR_SIGNER_KEY"));
    if entry.is_none() || key.is_none() {
        return reply(200, "{\"ok\":true,\"ready\":false,\"missing\":[\"ENTRYPOINT_ADDRESS[_<CHAIN>]\"]}");
    }
    let floor = env("AGENTKEYS_BUNDLER_GAS_FLOOR_WEI").is_some()
        || contracts::PROFILES_WITH_GAS_FLOOR.contains(&chain.as_str());
    let rpc = env("AGENTKEYS_CHAIN_RPC_HTTP").and_then(|u| u.strip_prefix("http://127.0.0.1:").map(str::to_owned));
    if let (true, Some(addr)) = (floor, rpc) {
        let port = addr.split('/').next().unwrap_or_default().to_owned();
        let limit = Duration::from_secs(c.health_max_secs);
        let _ = TcpStream::connect(format!("127.0.0.1:{port}")).and_then(|mut s| {
            s.set_read_timeout(Some(limit))?;
            let body = r#"{"jsonrpc":"2.0","id":1,"method":"eth_getBalance","params":[]}"#;
            write!(
                s,
                "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )?;
            let mut buf = [0u8; 512];
            s.read(&mut buf).map(|_| ())
        });
    }
    reply(200, "{\"ok\":true,\"ready\":true}")
}

impl Service {
    fn answer(&self, r: &Req) -> Reply {
        let healthy = !self.marker.exists() && !self.broken_build;
        let broker = self.name == "agentkeys-broker-server";
        match (r.method.as_str(), r.path.as_str()) {
            ("GET", "/healthz") if !healthy => reply(500, "broken on purpose"),
            ("GET", "/healthz") => match self.contract.health {
                contracts::HealthBody::PlainOk => reply(200, "ok"),
                contracts::HealthBody::JsonOk => reply(200, format!("{{\"ok\":true,\"standin\":\"{}\"}}", self.name)),
                contracts::HealthBody::JsonReady => bundler_health(self.contract),
            },
            ("GET", "/.well-known/openid-configuration") if broker => {
                reply(200, format!("{{\"issuer\":\"{0}\",\"jwks_uri\":\"{0}/.well-known/jwks.json\"}}", self.issuer))
            }
            ("GET", "/.well-known/jwks.json") if broker => jwks(),
            ("POST", "/dev/derive-address") if self.name == "agentkeys-mock-server" => derive(r),
            ("POST", "/v1/agent/pairing/claim") if broker => claim(r),
            ("GET", p) if p.starts_with("/dev/") => reply(200, "dev"),
            _ => reply(404, "not found"),
        }
    }
}

/// The broker's JWKS: the key id stands for the OIDC keypair it serves (the real broker publishes
/// that keypair's public key), so a host with another keypair serves another JWKS.
fn jwks() -> Reply {
    let path = env("BROKER_OIDC_KEYPAIR_PATH").unwrap_or_default();
    let Ok(bytes) = std::fs::read(&path) else {
        return reply(500, format!("oidc keypair {path} unreadable"));
    };
    let kid = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3));
    reply(200, format!("{{\"keys\":[{{\"kty\":\"EC\",\"alg\":\"ES256\",\"crv\":\"P-256\",\"kid\":\"{kid:016x}\"}}]}}"))
}

/// `POST /dev/derive-address {"omni_account": …}` as the signer answers it: a session bearer is
/// required (401; the real one verifies it against the broker's session key), 503 without a master
/// secret, the address of upstream's derivation otherwise.
fn derive(r: &Req) -> Reply {
    if !r.authorization {
        return reply(401, "{\"error\":\"unauthorized\"}");
    }
    let Some(master) = env("DEV_KEY_SERVICE_MASTER_SECRET") else {
        return reply(503, "{\"error\":\"signer_disabled\"}");
    };
    let omni = r.body.split("\"omni_account\"").nth(1).and_then(|rest| rest.split('"').nth(1)).unwrap_or_default();
    match signer::derive_address(&master, omni) {
        Ok(address) => reply(200, format!("{{\"address\":\"{address}\",\"key_version\":{}}}", signer::KEY_VERSION)),
        Err(e) => reply(400, format!("{{\"error\":\"{e}\"}}")),
    }
}

fn serve(conn: TcpStream, svc: &Service) {
    let mut reader = BufReader::new(&conn);
    let mut first = String::new();
    if reader.read_line(&mut first).is_err() {
        return;
    }
    let mut parts = first.split_whitespace();
    let mut req = Req {
        method: parts.next().unwrap_or_default().to_owned(),
        path: parts.next().unwrap_or_default().to_owned(),
        content_type: None,
        authorization: false,
        body: String::new(),
    };
    let mut length = 0usize;
    let mut line = String::new();
    while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
        if let Some((k, v)) = line.trim_end().split_once(':') {
            match k.trim().to_ascii_lowercase().as_str() {
                "content-type" => req.content_type = Some(v.trim().to_ascii_lowercase()),
                "content-length" => length = v.trim().parse().unwrap_or(0).min(64 * 1024),
                "authorization" => req.authorization = true,
                _ => {}
            }
        }
        line.clear();
    }
    let mut body = vec![0u8; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    req.body = String::from_utf8_lossy(&body).into_owned();
    let r = svc.answer(&req);
    let head = format!("HTTP/1.1 {} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", r.status, r.body.len());
    let mut w = &conn;
    let _ = w.write_all(head.as_bytes()).and_then(|()| w.write_all(r.body.as_bytes()));
}

/// What the real binary checks before it serves, beyond its contract's variables: the files its
/// variables name (read, and parsed when JSON; some may be absent), and the signer's loading of the
/// broker's session public key file (exit 2 when it cannot).
fn check_files(c: &contracts::Contract, args: &[String]) {
    for f in c.files {
        let Some(path) = env(f.name) else { continue };
        match std::fs::read_to_string(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && f.absent_ok => {}
            Err(e) => refuse(c, &format!("{} {path}: {e}", f.message)),
            Ok(text) if f.json && serde_json::from_str::<serde_json::Value>(&text).is_err() => {
                refuse(c, &format!("{} {path}: not JSON", f.message.replace("reading", "parsing")))
            }
            Ok(_) => {}
        }
    }
    if c.mode == Some("--signer-only") {
        let p = arg_after(args, "--broker-session-pubkey-path")
            .unwrap_or_else(|| "/var/lib/agentkeys/.agentkeys/broker/session-keypair.pub.pem".into());
        let ok = std::fs::read_to_string(&p).is_ok_and(|t| is_p256_spki_pem(&t));
        if !ok {
            refuse(c, &format!("[mock-server] FATAL: cannot load broker session pubkey from {p}"));
        }
    }
}

/// The session public key the stand-in broker exports: a real P-256 point in SubjectPublicKeyInfo
/// PEM, the format the real broker writes (the stand-in's keypair holds no real key to derive it).
const SESSION_PUBKEY_PEM: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE3c9Vi86J9WwLlh0Y/06+8EoyTfbj
D5FV9nwCiwuEDru2Rp0CrmA4u0sobWw7tElYKZL0ToRBPw6bzmz9SOnT5A==
-----END PUBLIC KEY-----
";

/// DER of a P-256 SubjectPublicKeyInfo up to the uncompressed point (ecPublicKey, prime256v1).
const SPKI_P256_HEAD: [u8; 27] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce,
    0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00, 0x04,
];

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let data: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    let end = data.iter().rposition(|&b| b != b'=').map_or(0, |i| i + 1);
    let (mut out, mut acc, mut bits) = (Vec::new(), 0u32, 0);
    for &c in &data[..end] {
        acc = (acc << 6) | u32::from(val(c)?);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

/// Is `text` a P-256 public key in SubjectPublicKeyInfo PEM (what the signer loads at start)?
fn is_p256_spki_pem(text: &str) -> bool {
    let body =
        text.trim().strip_prefix("-----BEGIN PUBLIC KEY-----").and_then(|t| t.strip_suffix("-----END PUBLIC KEY-----"));
    body.and_then(base64_decode).is_some_and(|der| der.len() == 91 && der.starts_with(&SPKI_P256_HEAD))
}

/// The broker exports its session public key at boot once its session keypair loads (mode 0644).
fn export_pubkey(args: &[String]) {
    use std::os::unix::fs::PermissionsExt;
    let Some(out) = arg_after(args, "--export-session-pubkey-to") else {
        return;
    };
    let keypair = env("BROKER_SESSION_KEYPAIR_PATH").unwrap_or_else(|| fail("BROKER_SESSION_KEYPAIR_PATH is not set"));
    std::fs::read_to_string(&keypair).unwrap_or_else(|e| fail(&format!("BOOT_FAIL: {keypair}: {e}")));
    let tmp = format!("{out}.tmp");
    std::fs::write(&tmp, SESSION_PUBKEY_PEM)
        .and_then(|()| std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644)))
        .and_then(|()| std::fs::rename(&tmp, &out))
        .unwrap_or_else(|e| fail(&format!("{out}: {e}")));
}

/// Block SIGTERM in every thread (set before any is spawned) so one thread can wait for it.
fn watch_sigterm() -> nix::sys::signal::SigSet {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.thread_block().unwrap_or_else(|e| fail(&format!("blocking SIGTERM: {e}")));
    set
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let exe = PathBuf::from(args.first().cloned().unwrap_or_default());
    let name = exe.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if name == "agentkeys-standin" {
        fixture_command(&args);
    }
    if args.get(1).is_some_and(|a| a == "keygen") {
        keygen(&args);
    }
    let contract =
        contracts::contract(&name, &args[1..]).unwrap_or_else(|| fail(&format!("{name}: no upstream contract")));
    let getenv = |k: &str| std::env::var(k).ok();
    if let Some(msg) = contracts::start_error(contract, &args[1..], &getenv) {
        refuse(contract, &msg);
    }
    check_files(contract, &args);
    export_pubkey(&args);
    let resolved = std::fs::canonicalize(&exe).unwrap_or(exe.clone());
    let marker = Path::new(&format!("{}.fail-health", exe.display())).to_path_buf();
    let marker = if marker.exists() { marker } else { PathBuf::from(format!("{}.fail-health", resolved.display())) };
    let broken_build = std::fs::read("/proc/self/exe").is_ok_and(|b| b.ends_with(b"standin:fail-health"));
    let svc = Service {
        name: name.clone(),
        contract,
        marker,
        broken_build,
        issuer: env("BROKER_OIDC_ISSUER").unwrap_or_default(),
    };
    let grace = contract.shutdown_grace.map(|(var, default)| env(var).and_then(|v| v.parse().ok()).unwrap_or(default));
    let sigterm = watch_sigterm();
    let addr = contracts::bind_address(contract, &args[1..], &getenv);
    let listener = TcpListener::bind(&addr).unwrap_or_else(|e| fail(&format!("{name}: cannot listen on {addr}: {e}")));
    println!("standin {name} listening on {addr}");
    std::thread::spawn(move || {
        let _ = sigterm.wait();
        // The broker serves on for its grace before it drains; the others stop at once.
        if let Some(secs) = grace {
            println!("standin {name}: SIGTERM, serving {secs} s more before draining");
            std::thread::sleep(Duration::from_secs(secs));
        }
        std::process::exit(0);
    });
    for conn in listener.incoming().flatten() {
        let svc = svc.clone();
        std::thread::spawn(move || serve(conn, &svc));
    }
}
