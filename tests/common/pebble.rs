//! A real ACME CA for tests: Debian's Pebble with pebble-challtestsrv as its DNS, and a real nginx
//! serving a root's ACME webroot on Pebble's HTTP-01 port. All on loopback; children are killed
//! and reaped on drop.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Pebble {
    pub dir: tempfile::TempDir,
    /// The loopback address this run uses (its own, so two test suites on one machine never meet).
    pub ip: String,
    children: Vec<Child>,
    pub directory_url: String,
    /// CA of Pebble's own API (not the issuing root).
    pub api_ca: PathBuf,
}

/// Run openssl in `dir`, failing the test with its stderr.
pub fn openssl(args: &[&str], dir: &Path) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().unwrap();
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn wait_port(ip: &str, port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect((ip, port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {ip}:{port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Pebble's API certificate (SAN localhost, 127.0.0.1) and its CA, written into `d`
/// as cert.pem, key.pem and ca.pem.
pub fn api_certs(d: &Path) {
    api_certs_for(d, "127.0.0.1");
}

/// The same, valid for `ip` too.
pub fn api_certs_for(d: &Path, ip: &str) {
    openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            "/CN=pebble test CA",
            "-days",
            "2",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ],
        d,
    );
    openssl(
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "key.pem",
            "-out",
            "req.csr",
        ],
        d,
    );
    std::fs::write(
        d.join("ext.cnf"),
        format!("subjectAltName=DNS:localhost,IP:127.0.0.1,IP:{ip}\nbasicConstraints=CA:FALSE\n"),
    )
    .unwrap();
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            "req.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
            "-out",
            "cert.pem",
        ],
        d,
    );
}

/// Pebble's configuration: API on 14000, management on 15000, HTTP-01 validation on `http_port`.
pub fn config_json(http_port: u16) -> String {
    config_json_at("127.0.0.1", http_port)
}

/// The same, listening on `ip`.
pub fn config_json_at(ip: &str, http_port: u16) -> String {
    config_json_validity(ip, http_port, None)
}

/// The same, issuing certificates valid for `validity_secs` when given.
pub fn config_json_validity(ip: &str, http_port: u16, validity_secs: Option<u64>) -> String {
    let validity = validity_secs.map(|s| format!(r#","certificateValidityPeriod":{s}"#)).unwrap_or_default();
    format!(
        r#"{{"pebble":{{"listenAddress":"{ip}:14000","managementListenAddress":"{ip}:15000","certificate":"cert.pem","privateKey":"key.pem","httpPort":{http_port},"tlsPort":5001,"ocspResponderURL":"","externalAccountBindingRequired":false{validity}}}}}"#
    )
}

/// pebble-challtestsrv as the CA's DNS only: every name answers `ip`; its own challenge servers off.
pub fn challtestsrv_args(ip: &str) -> Vec<String> {
    let dns = format!("{ip}:8053");
    let mgmt = format!("{ip}:8055");
    [
        "-dns01",
        &dns,
        "-defaultIPv4",
        ip,
        "-defaultIPv6",
        "",
        "-http01",
        "",
        "-https01",
        "",
        "-tlsalpn01",
        "",
        "-management",
        &mgmt,
    ]
    .map(str::to_owned)
    .to_vec()
}

impl Pebble {
    /// Start challtestsrv, Pebble (fast mode unless `realistic`), and nginx serving `webroot`.
    pub fn start(webroot: &Path, realistic: bool) -> Pebble {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let ip = format!("127.0.0.{}", 2 + std::process::id() % 250);
        api_certs_for(d, &ip);
        let config = config_json_at(&ip, 5002);
        std::fs::write(d.join("pebble.json"), config).unwrap();
        let quiet = |c: &mut Command| {
            c.current_dir(d).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        };
        let mut children = Vec::new();
        let mut dns = Command::new("pebble-challtestsrv");
        dns.args(challtestsrv_args(&ip));
        quiet(&mut dns);
        children.push(dns.spawn().expect("pebble-challtestsrv (package pebble)"));
        let mut ca = Command::new("pebble");
        ca.args(["-config", "pebble.json", "-dnsserver", &format!("{ip}:8053")]);
        if !realistic {
            ca.env("PEBBLE_VA_NOSLEEP", "1").env("PEBBLE_WFE_NONCEREJECT", "0");
        }
        // See `in_container::NO_AUTHZ_REUSE`: Pebble 2.4's reuse can leave order requests hanging.
        ca.env("PEBBLE_AUTHZREUSE", "0");
        quiet(&mut ca);
        children.push(ca.spawn().expect("pebble"));
        let nginx_conf = format!(
            "pid {d}/nginx.pid;\nerror_log {d}/nginx.err;\nevents {{}}\nhttp {{\n access_log off;\n client_body_temp_path {d}/b;\n proxy_temp_path {d}/p;\n fastcgi_temp_path {d}/f;\n uwsgi_temp_path {d}/u;\n scgi_temp_path {d}/s;\n server {{\n  listen {ip}:5002;\n  location ^~ /.well-known/acme-challenge/ {{ root {w}; default_type text/plain; try_files $uri =404; }}\n  location / {{ return 503; }}\n }}\n}}\n",
            d = d.display(),
            w = webroot.display(),
            ip = ip
        );
        std::fs::write(d.join("nginx.conf"), nginx_conf).unwrap();
        let mut web = Command::new("nginx");
        web.args(["-c"]).arg(d.join("nginx.conf")).args(["-p"]).arg(d).args(["-g", "daemon off;"]);
        quiet(&mut web);
        children.push(web.spawn().expect("nginx"));
        let p = Pebble {
            directory_url: format!("https://{ip}:14000/dir"),
            api_ca: d.join("ca.pem"),
            dir,
            children,
            ip: ip.clone(),
        };
        for port in [8055, 14000, 15000, 5002] {
            wait_port(&ip, port);
        }
        p
    }

    /// Point `host` at `addr` in challtestsrv's DNS.
    pub fn set_a(&self, host: &str, addr: &str) {
        let body = format!(r#"{{"host":"{host}.","addresses":["{addr}"]}}"#);
        let out = Command::new("curl")
            .args(["-sf", "-X", "POST", "-d", &body, &format!("http://{}:8055/add-a", self.ip)])
            .output()
            .unwrap();
        assert!(out.status.success(), "challtestsrv add-a: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Pebble's issuing root (new on every start), written to a file.
    pub fn issuing_root(&self) -> PathBuf {
        let path = self.dir.path().join("issuing-root.pem");
        let out = Command::new("curl")
            .args(["-sf", "--cacert"])
            .arg(&self.api_ca)
            .arg(format!("https://{}:15000/roots/0", self.ip))
            .output()
            .unwrap();
        assert!(out.status.success(), "fetch roots/0: {}", String::from_utf8_lossy(&out.stderr));
        std::fs::write(&path, &out.stdout).unwrap();
        path
    }

    /// Verify a PEM chain (leaf first) against Pebble's issuing root with openssl.
    pub fn verify_chain(&self, chain: &Path) -> Result<(), String> {
        let root = self.issuing_root();
        let out = Command::new("openssl")
            .arg("verify")
            .arg("-CAfile")
            .arg(&root)
            .arg("-untrusted")
            .arg(chain)
            .arg(chain)
            .output()
            .unwrap();
        if out.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&out.stderr).into_owned()) }
    }
}

impl Drop for Pebble {
    /// TERM, not KILL: a SIGKILLed nginx master leaves its workers behind.
    fn drop(&mut self) {
        for c in &self.children {
            let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for c in &mut self.children {
            while Instant::now() < deadline && matches!(c.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
