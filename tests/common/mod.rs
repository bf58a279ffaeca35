//! Shared helpers of the integration tests: fake roots, running the real binary, snapshots.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod bundle;
pub mod container;
pub mod deb;
pub mod in_container;
pub mod moto;
pub mod pebble;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const BIN: &str = env!("CARGO_BIN_EXE_agentkeys-hostd");
pub const ACCOUNT: &str = "429071895007";

/// A base configuration every fake host gets (its own RPC and addresses, overriding the profile).
pub const BASE_CONFIG: &str = include_str!("base-config.toml");

/// The env files holding the one-shot secrets a fresh host gets, and the key of each secret (the
/// config worker's KEK is legacy: kept where it exists, never minted).
pub const SECRET_ENV: [(&str, &str); 3] = [
    ("/etc/agentkeys/dev-key-service.env", "DEV_KEY_SERVICE_MASTER_SECRET"),
    ("/etc/agentkeys/worker-creds.env", "AGENTKEYS_WORKER_KEK_HEX"),
    ("/etc/agentkeys/worker-memory.env", "AGENTKEYS_MEMORY_KEK_HEX"),
];

/// Every file whose bytes must survive any run: the secret env files and the broker's keypairs.
pub const SECRET_FILES: [&str; 6] = [
    SECRET_ENV[0].0,
    SECRET_ENV[1].0,
    SECRET_ENV[2].0,
    "/etc/agentkeys/worker-config.env",
    "/var/lib/agentkeys/.agentkeys/broker/oidc-keypair.json",
    "/var/lib/agentkeys/.agentkeys/broker/session-keypair.json",
];

/// A fresh fake root with `etc/agentkeys/hostd.toml`.
pub fn fake_root(config: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("etc/agentkeys")).unwrap();
    std::fs::write(dir.path().join("etc/agentkeys/hostd.toml"), config).unwrap();
    dir
}

/// A benchmark goal's verdict. The benches also run in test mode (a debug build) inside
/// `cargo test --all-targets`; their figures there are not judged against the release goals.
pub fn goal(met: bool) -> &'static str {
    if cfg!(debug_assertions) {
        "debug build, not judged: tests/bench/run.sh measures release"
    } else if met {
        "met"
    } else {
        "NOT met"
    }
}

#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl Run {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.stdout.lines().next().unwrap_or_default())
            .unwrap_or_else(|e| panic!("first stdout line is not JSON ({e}): {}\nstderr: {}", self.stdout, self.stderr))
    }
}

pub fn run_in(dir: &Path, args: &[&str]) -> Run {
    let out: Output = Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .output()
        .unwrap();
    Run::from(out)
}

/// `agentkeys-hostd reconcile --root ROOT --no-systemd --no-acme ARGS…`
pub fn reconcile(root: &Path, args: &[&str]) -> Run {
    let mut all = vec!["reconcile", "--root", root.to_str().unwrap(), "--no-systemd", "--no-acme"];
    all.extend_from_slice(args);
    run_in(root, &all)
}

/// One entry of a snapshot: type, mode, owner, content (or link target), mtime and inode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snap {
    pub kind: char,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub content: Vec<u8>,
    pub mtime_ns: i64,
    pub ino: u64,
}

/// Every entry under `root`, keyed by its path inside the root; `run/` (the runtime lock, which
/// holds the pid of the last run, tmpfs on a real host) is left out.
pub fn snapshot(root: &Path) -> BTreeMap<PathBuf, Snap> {
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out.retain(|p, _| !p.starts_with("run"));
    out
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Snap>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        let m = std::fs::symlink_metadata(&p).unwrap();
        let (kind, content) = if m.file_type().is_symlink() {
            ('l', std::fs::read_link(&p).unwrap().into_os_string().into_encoded_bytes())
        } else if m.is_dir() {
            ('d', Vec::new())
        } else {
            ('f', std::fs::read(&p).unwrap())
        };
        let rel = p.strip_prefix(root).unwrap().to_path_buf();
        out.insert(
            rel,
            Snap {
                kind,
                mode: m.mode() & 0o7777,
                uid: m.uid(),
                gid: m.gid(),
                content,
                mtime_ns: m.mtime() * 1_000_000_000 + m.mtime_nsec(),
                ino: m.ino(),
            },
        );
        if kind == 'd' {
            walk(root, &p, out);
        }
    }
}

/// Assert two snapshots are identical, naming the first difference.
pub fn assert_same(before: &BTreeMap<PathBuf, Snap>, after: &BTreeMap<PathBuf, Snap>, what: &str) {
    for (p, s) in after {
        match before.get(p) {
            None => panic!("{what}: {} was created", p.display()),
            Some(b) if b != s => panic!(
                "{what}: {} changed ({:?} → {:?})",
                p.display(),
                (b.kind, b.mode, b.mtime_ns),
                (s.kind, s.mode, s.mtime_ns)
            ),
            _ => {}
        }
    }
    for p in before.keys() {
        assert!(after.contains_key(p), "{what}: {} was removed", p.display());
    }
}

/// Install executable stand-ins for every binary the units reference, so unit linting can check them.
pub fn stub_binaries(root: &Path) {
    let mut names: Vec<String> = service_binaries().iter().map(|b| format!("usr/local/bin/{b}")).collect();
    names.push("usr/bin/agentkeys-hostd".into());
    for n in names {
        let p = root.join(&n);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        write_executable(&p, b"#!/bin/sh\nexit 0\n");
    }
}

/// Test values of the optional services' operator inputs: (service input dir name, file, content).
/// Not secrets of anything; the exposure test looks for each of them in every output.
pub const INPUTS: [(&str, &str, &str); 8] = [
    ("mcp-server", "vendor-tokens", "openai:test-vendor-token-0a1b,anthropic:test-vendor-token-2c3d\n"),
    ("mcp-server", "session-bearer", "test.session-bearer.4e5f\n"),
    ("gate", "upstream-api-key", "test-upstream-api-key-6a7b\n"),
    (
        "gate",
        "keys.json",
        "{\"default_budget_tokens\": 1000, \"users\": [], \"keys\": [{\"key\": \"test-relay-key-8c9d\", \"key_id\": \"k1\", \"user_omni\": \"0x01\", \"device_id\": \"d1\"}]}\n",
    ),
    ("gate", "admin-token", "test-gate-admin-token-0e1f\n"),
    ("worker-channel-weixin", "telegram-bot-token", "123456:test-telegram-bot-token-2a3b\n"),
    ("worker-channel-weixin", "operator-omni", "0x4c4c4c4c4c4c4c4c4c4c4c4c4c4c4c4c4c4c4c4c4c4c4c4c4c4c4c4c4c4c4c4c\n"),
    ("worker-channel-weixin", "admin-token", "test-gateway-admin-token-5d6e\n"),
];

/// The secret parts of [`INPUTS`] (what must never appear in a log, report or error).
pub const INPUT_SECRETS: [&str; 8] = [
    "test-vendor-token-0a1b",
    "test-vendor-token-2c3d",
    "test.session-bearer.4e5f",
    "test-upstream-api-key-6a7b",
    "test-relay-key-8c9d",
    "test-gate-admin-token-0e1f",
    "test-telegram-bot-token-2a3b",
    "test-gateway-admin-token-5d6e",
];

/// Write every input of [`INPUTS`] under `root` (root's, mode 0600, directories 0700), as an
/// operator would.
pub fn write_inputs(root: &Path) {
    use std::os::unix::fs::PermissionsExt;
    for (dir, file, content) in INPUTS {
        let d = root.join("etc/agentkeys").join(dir);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::write(d.join(file), content).unwrap();
        std::fs::set_permissions(d.join(file), std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}

/// Write an executable (mode 0755) that a test may run at once. The bytes are written by a child
/// process, so no writable descriptor of the file ever exists in this multi-threaded test process:
/// another test thread's fork would inherit it until its exec, and running the file meanwhile
/// fails with "Text file busy" (ETXTBSY).
pub fn write_executable(path: &Path, bytes: &[u8]) {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = Command::new("sh")
        .args(["-c", "cat >\"$1\" && chmod 0755 \"$1\"", "sh"])
        .arg(path)
        .stdin(Stdio::piped())
        .spawn()
        .expect("sh");
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "writing the executable {}", path.display());
}

/// The four stacks as selector arguments, with a zone each (one multi-label).
pub fn stacks() -> Vec<(&'static str, Vec<&'static str>)> {
    vec![
        ("prod", vec!["--zone", "litentry.org"]),
        ("test-1", vec!["--ci", "--zone", "litentry.org"]),
        ("test-7", vec!["--ci", "--slot", "7", "--zone", "agents.example.co.uk"]),
        ("base", vec!["--base", "--zone", "litentry.org"]),
    ]
}

/// The managed units, in start order (from the catalog).
/// (Without the optional services: a test host runs what the stand-in's default install ships.)
pub fn units() -> Vec<&'static str> {
    hostd::decide::catalog::SERVICES.iter().filter(|s| !s.optional).map(|s| s.unit).collect()
}

/// Every distinct service binary of the catalog.
pub fn service_binaries() -> Vec<&'static str> {
    let mut b: Vec<&str> = hostd::decide::catalog::SERVICES.iter().map(|s| s.binary).collect();
    b.sort_unstable();
    b.dedup();
    b
}

/// Tests that start Pebble share its fixed ports: one at a time.
pub fn pebble_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
