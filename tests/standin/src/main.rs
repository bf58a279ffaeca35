//! Stand-in for the AgentKeys service binaries in container tests. Installed under each service's
//! binary name; behaves per catalog entry: binds its port, answers `/healthz`, and for the broker
//! also `keygen`, OIDC discovery, JWKS and the pairing-claim 401. A file `<binary>.fail-health`
//! next to the binary, or the bytes `standin:fail-health` appended to the executable itself (a
//! release whose service is broken), make `/healthz` answer 500.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};

/// Every service binary name this fixture stands in for (the catalog's; `tests/host_converge.rs`
/// checks the two agree).
const NAMES: [&str; 9] = [
    "agentkeys-broker-server",
    "agentkeys-bundler",
    "agentkeys-mock-server",
    "agentkeys-worker-audit",
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
fn fixture_command(args: &[String]) -> ! {
    use std::os::unix::fs::PermissionsExt;
    match (args.get(1).map(String::as_str), args.get(2)) {
        (Some("names"), None) => NAMES.iter().for_each(|n| println!("{n}")),
        (Some("install"), Some(dir)) => {
            let me = std::env::current_exe().unwrap_or_else(|e| fail(&format!("own executable: {e}")));
            for n in NAMES {
                let to = Path::new(dir).join(n);
                std::fs::copy(&me, &to)
                    .and_then(|_| std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o755)))
                    .unwrap_or_else(|e| fail(&format!("installing {}: {e}", to.display())));
            }
        }
        _ => fail("as agentkeys-standin: `names` or `install DIR`; installed under a service's name it serves"),
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

fn reply(status: u16, body: impl Into<String>) -> Reply {
    Reply { status, body: body.into() }
}

#[derive(Clone)]
struct Service {
    name: String,
    marker: PathBuf,
    broken_build: bool,
    issuer: String,
}

impl Service {
    fn answer(&self, method: &str, path: &str) -> Reply {
        let healthy = !self.marker.exists() && !self.broken_build;
        match (method, path) {
            ("GET", "/healthz") if !healthy => reply(500, "broken on purpose"),
            ("GET", "/healthz") => match self.name.as_str() {
                "agentkeys-worker-creds"
                | "agentkeys-worker-memory"
                | "agentkeys-worker-config"
                | "agentkeys-worker-classify" => reply(200, "{\"ok\":true}"),
                "agentkeys-bundler" => reply(200, "{\"ready\":true}"),
                _ => reply(200, "ok"),
            },
            ("GET", "/.well-known/openid-configuration") if self.name == "agentkeys-broker-server" => {
                reply(200, format!("{{\"issuer\":\"{0}\",\"jwks_uri\":\"{0}/.well-known/jwks.json\"}}", self.issuer))
            }
            ("GET", "/.well-known/jwks.json") if self.name == "agentkeys-broker-server" => {
                reply(200, "{\"keys\":[{\"kty\":\"EC\",\"alg\":\"ES256\",\"crv\":\"P-256\",\"kid\":\"standin\"}]}")
            }
            ("POST", "/v1/agent/pairing/claim") if self.name == "agentkeys-broker-server" => {
                reply(401, "{\"error\":\"unauthorized\"}")
            }
            ("GET", p) if p.starts_with("/dev/") => reply(200, "dev"),
            _ => reply(404, "not found"),
        }
    }
}

fn serve(conn: TcpStream, svc: &Service) {
    let mut reader = BufReader::new(&conn);
    let mut first = String::new();
    if reader.read_line(&mut first).is_err() {
        return;
    }
    let mut parts = first.split_whitespace();
    let (method, path) = (parts.next().unwrap_or_default().to_owned(), parts.next().unwrap_or_default().to_owned());
    let mut line = String::new();
    while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
        line.clear();
    }
    let r = svc.answer(&method, &path);
    let head = format!("HTTP/1.1 {} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", r.status, r.body.len());
    let mut w = &conn;
    let _ = w.write_all(head.as_bytes()).and_then(|()| w.write_all(r.body.as_bytes()));
}

fn bind_address(name: &str, args: &[String]) -> String {
    if let Some(port) = arg_after(args, "--port") {
        let host = arg_after(args, "--bind")
            .unwrap_or_else(|| if name == "agentkeys-mock-server" { "0.0.0.0".into() } else { "127.0.0.1".into() });
        return format!("{host}:{port}");
    }
    for var in ["AGENTKEYS_WORKER_AUDIT_BIND", "AGENTKEYS_WORKER_EMAIL_BIND", "WORKER_BIND", "AGENTKEYS_BUNDLER_BIND"] {
        if let Some(v) = env(var) {
            return v;
        }
    }
    fail("no --port and no *_BIND variable: cannot tell where to listen")
}

/// Check what the real service would need, so a wrong unit fails here too.
fn check_inputs(name: &str, args: &[String]) {
    let need = |var: &str| {
        if env(var).is_none() {
            fail(&format!("{name}: {var} is not set"));
        }
    };
    match name {
        "agentkeys-mock-server" => need("DEV_KEY_SERVICE_MASTER_SECRET"),
        "agentkeys-broker-server" => {
            ["BROKER_OIDC_ISSUER", "ACCOUNT_ID", "AGENTKEYS_CHAIN_RPC_HTTP"].iter().for_each(|v| need(v))
        }
        "agentkeys-worker-creds" => need("AGENTKEYS_WORKER_KEK_HEX"),
        "agentkeys-worker-memory" => need("AGENTKEYS_MEMORY_KEK_HEX"),
        "agentkeys-worker-config" => need("AGENTKEYS_CONFIG_KEK_HEX"),
        _ => {}
    }
    if matches!(
        name,
        "agentkeys-worker-creds" | "agentkeys-worker-memory" | "agentkeys-worker-config" | "agentkeys-worker-classify"
    ) {
        need("BROKER_CAP_PUBKEY_PEM");
    }
    if let Some(p) = arg_after(args, "--broker-session-pubkey-path") {
        let text = std::fs::read_to_string(&p).unwrap_or_else(|e| fail(&format!("{p}: {e}")));
        if !text.contains("END PUBLIC KEY") {
            fail(&format!("{p} is not a public key"));
        }
    }
}

/// The broker exports its session public key at boot, derived from its session keypair.
fn export_pubkey(args: &[String]) {
    let Some(out) = arg_after(args, "--export-session-pubkey-to") else {
        return;
    };
    let keypair = env("BROKER_SESSION_KEYPAIR_PATH").unwrap_or_else(|| fail("BROKER_SESSION_KEYPAIR_PATH is not set"));
    let secret = std::fs::read_to_string(&keypair).unwrap_or_else(|e| fail(&format!("{keypair}: {e}")));
    let body: String = secret.bytes().filter(u8::is_ascii_hexdigit).map(char::from).take(64).collect();
    let pem = format!("-----BEGIN PUBLIC KEY-----\n{body}\n-----END PUBLIC KEY-----\n");
    let tmp = format!("{out}.tmp");
    std::fs::write(&tmp, pem)
        .and_then(|()| std::fs::rename(&tmp, &out))
        .unwrap_or_else(|e| fail(&format!("{out}: {e}")));
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
    check_inputs(&name, &args);
    export_pubkey(&args);
    let resolved = std::fs::canonicalize(&exe).unwrap_or(exe.clone());
    let marker = Path::new(&format!("{}.fail-health", exe.display())).to_path_buf();
    let marker = if marker.exists() { marker } else { PathBuf::from(format!("{}.fail-health", resolved.display())) };
    let broken_build = std::fs::read("/proc/self/exe").is_ok_and(|b| b.ends_with(b"standin:fail-health"));
    let svc =
        Service { name: name.clone(), marker, broken_build, issuer: env("BROKER_OIDC_ISSUER").unwrap_or_default() };
    let addr = bind_address(&name, &args);
    let listener = TcpListener::bind(&addr).unwrap_or_else(|e| fail(&format!("{name}: cannot listen on {addr}: {e}")));
    println!("standin {name} listening on {addr}");
    for conn in listener.incoming().flatten() {
        let svc = svc.clone();
        std::thread::spawn(move || serve(conn, &svc));
    }
}
