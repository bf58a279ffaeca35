//! moto's server (pinned, tests/harness/cloud-tools.sh) as the AWS side of the escrow tests: on
//! this machine's loopback, or on the loopback of a network namespace the test creates (where a
//! container joins it), and `escrow_tool.py` to read and tamper with the secrets as an operator
//! would. Stopped (and its namespace removed) on drop.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// The cloud tools' bin directory (moto_server, python with boto3).
pub fn cloud_tools() -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/harness/cloud-tools.sh");
    let out = Command::new(script).stderr(Stdio::inherit()).output().unwrap();
    assert!(out.status.success(), "tests/harness/cloud-tools.sh failed");
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

pub struct Moto {
    child: Child,
    bin: PathBuf,
    /// The network namespace it runs in (`None`: this machine's loopback).
    pub netns: Option<String>,
    pub port: u16,
}

impl Moto {
    /// On this machine's loopback, on a free port.
    pub fn start() -> Moto {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        Self::spawn(None, port)
    }

    /// In a new network namespace of its own (`/run/netns/NAME`), on 127.0.0.1:4566 there.
    pub fn start_in_netns() -> Moto {
        let name = format!("akh-moto-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::SeqCst));
        let ok = |args: &[&str]| assert!(Command::new("ip").args(args).status().unwrap().success(), "ip {args:?}");
        ok(&["netns", "add", &name]);
        ok(&["-n", &name, "link", "set", "lo", "up"]);
        Self::spawn(Some(name), 4566)
    }

    /// On this machine's loopback, with IAM authorization enforced after the first `n` calls
    /// (moto's `INITIAL_NO_AUTH_ACTION_COUNT`): the setup's calls go through, the rest are judged
    /// by the policies of the calling principal.
    pub fn start_with_auth_after(n: u32) -> Moto {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        Self::spawn_with(None, port, Some(n))
    }

    fn spawn(netns: Option<String>, port: u16) -> Moto {
        Self::spawn_with(netns, port, None)
    }

    fn spawn_with(netns: Option<String>, port: u16, auth_after: Option<u32>) -> Moto {
        let bin = cloud_tools();
        let mut cmd = match &netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(bin.join("moto_server"));
                c
            }
            None => Command::new(bin.join("moto_server")),
        };
        if let Some(n) = auth_after {
            cmd.env("INITIAL_NO_AUTH_ACTION_COUNT", n.to_string());
        }
        let child = cmd
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let moto = Moto { child, bin, netns, port };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !moto.listening() {
            assert!(Instant::now() < deadline, "moto_server did not listen on 127.0.0.1:{port}");
            std::thread::sleep(Duration::from_millis(100));
        }
        moto
    }

    fn in_ns(&self, program: &Path) -> Command {
        match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(program);
                c
            }
            None => Command::new(program),
        }
    }

    fn listening(&self) -> bool {
        let probe = format!("exec 3<>/dev/tcp/127.0.0.1/{}", self.port);
        self.in_ns(Path::new("/bin/bash")).args(["-c", &probe]).stderr(Stdio::null()).status().unwrap().success()
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The environment hostd gets: static test credentials (no IMDS), this endpoint.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ACCESS_KEY_ID", "test".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
            ("AWS_ENDPOINT_URL_SECRETS_MANAGER", self.endpoint()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// `escrow_tool.py COMMAND ARGS…`; panics when it fails.
    pub fn tool(&self, args: &[&str]) -> String {
        let (ok, out) = self.tool_with(args);
        assert!(ok, "escrow_tool {args:?}: {out}");
        out
    }

    /// Whether `escrow_tool.py ARGS…` succeeded, and its stdout (its stderr when it failed).
    fn tool_with(&self, args: &[&str]) -> (bool, String) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/cloud/escrow_tool.py");
        let mut cmd = self.in_ns(&self.bin.join("python"));
        cmd.arg(script).arg(self.endpoint()).args(args);
        let out = cmd.output().unwrap();
        let text = if out.status.success() { out.stdout } else { out.stderr };
        (out.status.success(), String::from_utf8_lossy(&text).into_owned())
    }

    /// A new IAM user with `policy` inline; its access key (id, secret).
    pub fn iam_user(&self, name: &str, policy: &str) -> (String, String) {
        let key: serde_json::Value = serde_json::from_str(&self.tool(&["iam-user", name, policy])).unwrap();
        (key["id"].as_str().unwrap().to_owned(), key["secret"].as_str().unwrap().to_owned())
    }

    /// The secret as read: `{"absent": true}` or `{"tags", "body", "version", "kms"}`.
    pub fn get(&self, name: &str) -> serde_json::Value {
        serde_json::from_str(&self.tool(&["get", name])).unwrap()
    }

    /// The escrowed items of `name`: item name → base64 value.
    pub fn items(&self, name: &str) -> serde_json::Map<String, serde_json::Value> {
        let got = self.get(name);
        let body: serde_json::Value = serde_json::from_str(got["body"].as_str().unwrap()).unwrap();
        body["items"].as_object().unwrap().clone()
    }

    /// Freeze (true) or thaw the server: a frozen one accepts connections and answers nothing.
    pub fn freeze(&self, frozen: bool) {
        let sig = if frozen { "-STOP" } else { "-CONT" };
        Command::new("kill").args([sig, &self.child.id().to_string()]).status().unwrap();
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-CONT", &self.child.id().to_string()]).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(ns) = &self.netns {
            let _ = Command::new("ip").args(["netns", "delete", ns]).status();
        }
    }
}
