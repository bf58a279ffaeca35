//! ACME issuance against a real CA: Debian's Pebble (+ challtestsrv DNS) validating HTTP-01
//! through a real nginx that serves hostd's webroot under a fake root.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::MetadataExt;
use std::process::Command;

use common::pebble::Pebble;
use hostd::host::acme::{self, AcmeConfig};
use hostd::host::fs::Root;

fn key_is_p256(path: &std::path::Path) -> bool {
    let out = Command::new("openssl").args(["pkey", "-noout", "-text", "-in"]).arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout).contains("prime256v1")
}

/// A fake root with a webroot, Pebble (one at a time: fixed ports) serving it, and a runtime.
/// Fields drop in order: Pebble stops before the lock is released and the root removed.
struct Env {
    pebble: Pebble,
    _guard: std::sync::MutexGuard<'static, ()>,
    root: Root,
    webroot: std::path::PathBuf,
    cfg: AcmeConfig,
    rt: tokio::runtime::Runtime,
    _root_dir: tempfile::TempDir,
}

fn env(realistic: bool) -> Env {
    let _root_dir = tempfile::tempdir().unwrap();
    let root = Root::new(_root_dir.path());
    let webroot = root.path(hostd::decide::paths::ACME_WEBROOT);
    std::fs::create_dir_all(webroot.join(".well-known/acme-challenge")).unwrap();
    let _guard = common::pebble_lock();
    let pebble = Pebble::start(&webroot, realistic);
    let cfg = AcmeConfig {
        directory_url: pebble.directory_url.clone(),
        ca_bundle: Some(pebble.api_ca.clone()),
        ..AcmeConfig::default()
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    Env { pebble, _guard, root, webroot, cfg, rt, _root_dir }
}

#[test]
fn issues_installs_reuses_the_account_and_reports_failed_validation() {
    let e = env(false);
    let (root, webroot, pebble, cfg, rt) = (&e.root, &e.webroot, &e.pebble, &e.cfg, &e.rt);

    // The account is created once, stored 0600 in a 0700 directory, and reused byte-for-byte.
    let account = rt.block_on(acme::account(root, cfg)).unwrap();
    let stored = root.path("/var/lib/agentkeys-hostd/acme/account.json");
    assert_eq!(std::fs::metadata(&stored).unwrap().mode() & 0o777, 0o600);
    assert_eq!(std::fs::metadata(root.path(acme::ACCOUNT_DIR)).unwrap().mode() & 0o777, 0o700);
    let bytes = std::fs::read(&stored).unwrap();
    let again = rt.block_on(acme::account(root, cfg)).unwrap();
    assert_eq!(std::fs::read(&stored).unwrap(), bytes);
    let other = AcmeConfig { directory_url: pebble.directory_url.replace("/dir", "/other"), ..cfg.clone() };
    let Err(err) = rt.block_on(acme::account(root, &other)) else { panic!("another CA needs a deliberate change") };
    assert!(err.to_string().contains(&format!("belongs to {}", pebble.directory_url)), "{err}");

    // Issue, install as one unit, verify against Pebble's issuing root; a renewal gets a new key.
    let host = "broker-test-2.litentry.org";
    let first = rt.block_on(acme::issue(&account, root, host, None, None)).unwrap();
    acme::install(root, host, "v1", &first).unwrap();
    let current = root.path(&format!("/var/lib/agentkeys-hostd/tls/{host}/current"));
    assert_eq!(std::fs::read_link(&current).unwrap().to_str(), Some("v1"));
    pebble.verify_chain(&current.join("fullchain.pem")).unwrap();
    assert!(key_is_p256(&current.join("privkey.pem")));
    assert_eq!(std::fs::metadata(current.join("privkey.pem")).unwrap().mode() & 0o777, 0o600);
    let second = rt.block_on(acme::issue(&again, root, host, None, None)).unwrap();
    acme::install(root, host, "v2", &second).unwrap();
    assert_eq!(std::fs::read_link(&current).unwrap().to_str(), Some("v2"));
    assert_ne!(first.key_pem, second.key_pem, "a fresh key per certificate");
    pebble.verify_chain(&current.join("fullchain.pem")).unwrap();
    assert!(
        std::fs::read_dir(webroot.join(".well-known/acme-challenge")).unwrap().next().is_none(),
        "tokens cleaned up"
    );

    // A host whose DNS points elsewhere fails validation with a class the ledger can use.
    let parked = "email-test-2.litentry.org";
    pebble.set_a(parked, "127.0.0.9");
    let failed = rt.block_on(acme::issue(&account, root, parked, None, None)).expect_err("validation must fail");
    assert_eq!(failed.host, parked);
    assert!(matches!(failed.class.as_str(), "connection" | "unauthorized" | "dns"), "{failed}");
    assert!(!root.path(&format!("/var/lib/agentkeys-hostd/tls/{parked}")).exists(), "nothing installed");
}

#[test]
fn realistic_pebble_with_nonce_rejections_and_delays_still_issues() {
    let e = env(true);
    let (root, pebble, cfg, rt) = (&e.root, &e.pebble, &e.cfg, &e.rt);
    let account = rt.block_on(acme::account(root, cfg)).unwrap();
    let id = hostd::decide::naming::Identity {
        stack: hostd::decide::naming::Stack::Test { slot: 2 },
        zone: "litentry.org".into(),
    };
    for host in id.public_hosts() {
        let host = host.as_str();
        let issued =
            rt.block_on(acme::issue(&account, root, host, None, None)).unwrap_or_else(|e| panic!("{host}: {e}"));
        acme::install(root, host, "v1", &issued).unwrap();
        pebble.verify_chain(&root.path(&format!("/var/lib/agentkeys-hostd/tls/{host}/current/fullchain.pem"))).unwrap();
    }
}
