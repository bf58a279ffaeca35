//! Replacing a dead broker host on real systemd (issue #20's acceptance), against moto's Secrets
//! Manager in a network namespace the test makes (the containers join it): host A converges and
//! escrows its master secret, KEKs and broker keypairs (written, read back, compared); A is
//! destroyed; a fresh host B of the same identity converges with the same command and holds
//! byte-identical values, its signer derives the same wallet address for the same account and its
//! broker serves the same JWKS. The replacement time is printed. A run killed between mint and
//! escrow, or refused an escrow, started no service and left no value behind.
//! Needs `--features agentkeys-hostd/failpoints` (tests/run.sh builds with it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Instant;

use common::container::Container;
use common::moto::Moto;
use common::{BASE_CONFIG, Run};

const DECLARE: [&str; 7] = ["--ci", "--slot", "4", "--zone", "example.org", "--account-id", "123456789012"];
const SECRET: &str = "agentkeys/escrow-test-4";
/// An omni account (64 hex), as a client would ask the signer about.
const OMNI: &str = "5a17c0de5a17c0de5a17c0de5a17c0de5a17c0de5a17c0de5a17c0de5a17c0de";
const KEYPAIRS: [&str; 2] = [
    "/var/lib/agentkeys/.agentkeys/broker/oidc-keypair.json",
    "/var/lib/agentkeys/.agentkeys/broker/session-keypair.json",
];

fn config() -> String {
    BASE_CONFIG.replace("enabled = false", "enabled = true")
}

fn reconcile(c: &Container, env: &[(String, String)], extra: &[&str]) -> Run {
    let env: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut args: Vec<&str> = vec!["env"];
    args.extend(env.iter().map(String::as_str));
    args.extend(extra);
    args.extend(["/usr/bin/agentkeys-hostd", "reconcile", "--no-acme", "--json"]);
    args.extend(DECLARE);
    c.exec(&args)
}

/// Every escrowed file's bytes on the host (the env files with secrets, the keypairs).
fn secret_files(c: &Container) -> BTreeMap<String, Option<Vec<u8>>> {
    let files = common::SECRET_ENV.iter().map(|(f, _)| *f).chain(KEYPAIRS);
    files.map(|p| (p.to_owned(), std::fs::read(c.path(p)).ok())).collect()
}

/// `curl` inside the namespace the containers share.
fn curl(netns: &str, args: &[&str]) -> String {
    let out = Command::new("ip").args(["netns", "exec", netns, "curl", "-sS", "--max-time", "10"]).args(args).output();
    let out = out.unwrap();
    assert!(out.status.success(), "curl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// The wallet address the host's signer derives for [`OMNI`], and the JWKS its broker serves.
fn identity_of(netns: &str) -> (String, String) {
    let body = format!("{{\"omni_account\":\"{OMNI}\"}}");
    let derived = curl(
        netns,
        &[
            "-H",
            "Authorization: Bearer session",
            "-H",
            "Content-Type: application/json",
            "-d",
            &body,
            "http://127.0.0.1:8092/dev/derive-address",
        ],
    );
    let address: serde_json::Value = serde_json::from_str(&derived).unwrap_or_else(|e| panic!("{e}: {derived}"));
    let jwks = curl(netns, &["http://127.0.0.1:8091/.well-known/jwks.json"]);
    (address["address"].as_str().unwrap().to_owned(), jwks)
}

fn active_units(c: &Container) -> Vec<String> {
    c.main_pids().into_iter().filter(|(_, s)| s.starts_with("active")).map(|(u, _)| u).collect()
}

#[test]
fn a_dead_host_is_replaced_with_every_secret_key_and_wallet_address_intact() {
    let moto = Moto::start_in_netns();
    let ns = moto.netns.clone().unwrap();
    let (values, address, jwks) = {
        let a = Container::boot_in_netns(&config(), &ns);
        let run = reconcile(&a, &moto.env(), &[]);
        assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
        let summary = run.json();
        assert_eq!((summary["escrow"].as_str(), summary["unhealthy"].as_object()), (Some("in_sync"), None));
        let values = secret_files(&a);
        assert!(values.values().all(Option::is_some), "{:?}", values.keys());
        let items = moto.items(SECRET);
        let names: Vec<&str> = items.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "AGENTKEYS_MEMORY_KEK_HEX",
                "AGENTKEYS_WORKER_KEK_HEX",
                "DEV_KEY_SERVICE_MASTER_SECRET",
                "broker/oidc-keypair.json",
                "broker/session-keypair.json"
            ]
        );
        for p in KEYPAIRS {
            let meta = std::fs::metadata(a.path(p)).unwrap();
            assert_eq!(std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777, 0o600, "{p}");
        }
        let (address, jwks) = identity_of(&ns);
        assert!(address.starts_with("0x") && jwks.contains("\"kid\""), "{address} {jwks}");
        // A no-op run asks AWS nothing: with moto frozen, a call would time out and go pending.
        moto.freeze(true);
        let again = reconcile(&a, &moto.env(), &[]);
        moto.freeze(false);
        assert_eq!(again.code, 0, "{}", again.stderr);
        assert_eq!(
            (again.json()["result"].as_str(), again.json()["escrow"].as_str()),
            (Some("converged"), Some("in_sync"))
        );
        (values, address, jwks)
    };
    // Host A is gone (its container and disk destroyed). Host B: the same identity, the same command.
    let started = Instant::now();
    let b = Container::boot_in_netns(&config(), &ns);
    let booted = started.elapsed();
    let converge = Instant::now();
    let run = reconcile(&b, &moto.env(), &[]);
    let converged = converge.elapsed();
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    eprintln!(
        "replacement host: booted in {:.1} s, converged by one reconcile in {:.1} s ({:.1} s in all)",
        booted.as_secs_f64(),
        converged.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    let summary = run.json();
    assert!(summary.get("secrets_generated").is_none(), "nothing minted on the replacement: {summary}");
    assert_eq!(summary["secrets_restored"].as_array().unwrap().len(), 5, "{summary}");
    assert_eq!(secret_files(&b), values, "byte-identical master secret, KEKs and keypairs");
    let (address_b, jwks_b) = identity_of(&ns);
    assert_eq!(address_b, address, "the signer derives the same wallet address");
    assert_eq!(jwks_b, jwks, "the broker serves the same JWKS");
    let journal = b.exec(&["journalctl", "--no-pager", "-o", "cat"]).stdout;
    let mut shown: Vec<String> = b.env_secrets();
    shown.extend(KEYPAIRS.iter().map(|p| String::from_utf8(values[*p].clone().unwrap()).unwrap().trim().to_owned()));
    for value in shown {
        assert!(!journal.contains(&value), "a secret value reached the journal");
    }
}

#[test]
fn a_run_killed_or_refused_before_its_escrow_started_nothing() {
    let moto = Moto::start_in_netns();
    let ns = moto.netns.clone().unwrap();
    let c = Container::boot_in_netns(&config(), &ns);
    // Escrow unreachable on a virgin host: exit 1, nothing minted, no unit written or started.
    let mut down = moto.env();
    down.retain(|(k, _)| k != "AWS_ENDPOINT_URL_SECRETS_MANAGER");
    down.push(("AWS_ENDPOINT_URL_SECRETS_MANAGER".into(), "http://127.0.0.1:1".into()));
    let refused = reconcile(&c, &down, &[]);
    assert_eq!(refused.code, 1, "{}\n{}", refused.stdout, refused.stderr);
    assert!(refused.stderr.contains("refusing to mint"), "{}", refused.stderr);
    assert!(secret_files(&c).values().all(Option::is_none) && active_units(&c).is_empty());
    assert!(!c.path("/etc/systemd/system/agentkeys-broker.service").exists());
    // Killed between the mint (keypairs made in staging) and the escrow write.
    let killed = reconcile(&c, &moto.env(), &["AGENTKEYS_HOSTD_FAILPOINT=escrow-minted"]);
    assert_ne!(killed.code, 0, "{}", killed.stderr);
    assert!(killed.stderr.contains("failpoint escrow-minted"), "{}", killed.stderr);
    assert!(secret_files(&c).values().all(Option::is_none), "no un-escrowed value on the host");
    assert!(active_units(&c).is_empty(), "no service started");
    assert_eq!(moto.get(SECRET)["absent"], true);
    // The next run escrows first, then writes and starts: the host holds what the escrow holds.
    let run = reconcile(&c, &moto.env(), &[]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let items = moto.items(SECRET);
    let files = secret_files(&c);
    use base64::Engine as _;
    for p in KEYPAIRS {
        let name = format!("broker/{}", p.rsplit('/').next().unwrap());
        let escrowed = base64::engine::general_purpose::STANDARD.decode(items[&name].as_str().unwrap()).unwrap();
        assert_eq!(files[p].as_deref(), Some(escrowed.as_slice()), "{p}");
    }
    assert!(!c.path("/var/lib/agentkeys-hostd/escrow-staging").exists(), "staging is emptied");
    assert_eq!(active_units(&c).len(), 10, "every service runs: {:?}", c.main_pids());
}
