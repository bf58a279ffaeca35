//! A fake host for the in-process tests of the run and the daemon: a scratch root with a
//! configuration, the broker's keypairs, releases of shell-script binaries, and the fake manager
//! (whose broker publishes its session key at start, as the real one does).

use std::path::{Path, PathBuf};

use crate::decide::identity::Selectors;
use crate::decide::settings::Flags;
use crate::host::clock::SystemClock;
use crate::host::fs::Root;
use crate::host::systemd::fake::FakeManager;
use crate::run::prepare::Request;

use super::{Host, ReleaseSource, RunReport, RunRequest};

pub(crate) const PUBKEY_PEM: &str =
    "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEAAAA\n-----END PUBLIC KEY-----\n";

/// The integration tests' base configuration (its own RPC and addresses, overriding the profile).
const CONFIG: &str = include_str!("../../../tests/common/base-config.toml");

/// A scratch host: its root, the fake manager, and a runtime.
pub(crate) struct TestHost {
    pub dir: tempfile::TempDir,
    pub root: Root,
    pub sd: std::rc::Rc<FakeManager>,
    pub rt: tokio::runtime::Runtime,
}

impl TestHost {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = Root::new(dir.path());
        let write = |p: &str, text: &str| {
            let path = dir.path().join(p.trim_start_matches('/'));
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, text).expect("write");
        };
        write("/etc/agentkeys/hostd.toml", CONFIG);
        write(crate::decide::paths::OIDC_KEYPAIR, "{}");
        write(crate::decide::paths::SESSION_KEYPAIR, "{}");
        let sd = std::rc::Rc::new(FakeManager::new());
        let pubkey = root.path(crate::decide::paths::SESSION_PUBKEY);
        sd.on_start(move |unit| {
            if unit == "agentkeys-broker.service" {
                std::fs::write(&pubkey, PUBKEY_PEM).expect("the broker's key");
            }
        });
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        Self { dir, root, sd, rt }
    }

    /// A release directory whose binaries are scripts carrying `version`.
    pub fn release(&self, version: &str) -> PathBuf {
        let dir = self.dir.path().join(format!("bundle-{version}"));
        std::fs::create_dir_all(dir.join("bin")).expect("mkdir");
        let mut manifest = format!(
            "version = \"{version}\"\ncommit = \"{:0>40}\"\nbroker_features = [\"auth-email-link\"]\n[binaries]\n",
            version.replace('.', "")
        );
        for name in crate::decide::release::required_binaries() {
            let bytes = format!("#!/bin/sh\n# {name} {version}\n");
            let path = dir.join("bin").join(name);
            std::fs::write(&path, &bytes).expect("binary");
            let mode = std::os::unix::fs::PermissionsExt::from_mode(0o755);
            std::fs::set_permissions(&path, mode).expect("chmod");
            let sha = crate::host::releases::sha256_hex(bytes.as_bytes());
            manifest.push_str(&format!("{name} = \"{sha}\"\n"));
        }
        std::fs::write(dir.join(crate::decide::release::MANIFEST), manifest).expect("manifest");
        dir
    }

    /// What the first run on a host is asked (the identity flags), with `release` if given.
    pub fn ask(release: Option<&Path>) -> RunRequest {
        RunRequest {
            request: Request {
                selectors: Selectors { zone: Some("litentry.org".into()), ..Selectors::default() },
                flags: Flags { account_id: Some("429071895007".into()), region: Some("us-east-1".into()) },
                ..Request::default()
            },
            release: release.map(|p| ReleaseSource::Local { path: p.display().to_string(), sha256: None }),
            dry_run: false,
            acme: false,
            keep_releases: 1,
            lock_wait: std::time::Duration::from_secs(1),
            trigger: None,
            unpaused: Vec::new(),
            allow_downgrade: false,
        }
    }

    /// One run through the library against the fake manager and its health gate.
    pub fn reconcile(&self, ask: &RunRequest) -> anyhow::Result<RunReport> {
        let db = crate::host::accounts::for_root(&self.root);
        let sd = &*self.sd;
        let gate = |s: &[&crate::decide::catalog::Service]| sd.gate(s);
        let connect = || Ok(sd);
        let host = Host {
            root: &self.root,
            accounts: db.as_ref(),
            systemd: Some(&connect),
            health: &gate,
            clock: &SystemClock,
            rt: &self.rt,
        };
        super::reconcile(&host, ask)
    }
}

/// The settings of the scratch host's first run (for the executor's tests).
pub fn settings() -> crate::decide::settings::Settings {
    let h = TestHost::new();
    let ask = TestHost::ask(None);
    let db = crate::host::accounts::for_root(&h.root);
    crate::run::prepare::prepare(&h.root, db.as_ref(), &ask.request, None).expect("settings").settings
}
