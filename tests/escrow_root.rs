//! The escrow's cases (issue #20 item 3) on hosts laid out under a directory, against moto's
//! Secrets Manager on loopback through the real SDK client: a virgin host mints, escrows, reads
//! back and only then writes; a run killed after the escrow write restores (never mints again);
//! an old-script host is backed up on its first run; a no-op run asks AWS nothing; a conflicting
//! escrow or one of another stack is refused (exit 3) with both sides unchanged; an unreachable
//! escrow refuses a virgin host (exit 1, nothing minted) and leaves an existing one pending.
//! The run killed between mint and escrow, keypairs and the signer's addresses are in
//! tests/escrow_host.rs (real systemd). Needs `--features agentkeys-hostd/failpoints`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Command;

use common::moto::Moto;
use common::{BASE_CONFIG, Run};

const DECLARE: [&str; 7] = ["--ci", "--slot", "7", "--zone", "example.org", "--account-id", "123456789012"];
const SECRET: &str = "agentkeys/escrow-test-7";
const MASTER: &str = "DEV_KEY_SERVICE_MASTER_SECRET";

/// Escrow on; every other network check of doctor kept on loopback (nothing listens there).
fn config() -> String {
    BASE_CONFIG.replace("enabled = false", "enabled = true") + LOOPBACK_ONLY
}

const LOOPBACK_ONLY: &str =
    "[acme]\ndirectory_url = \"https://127.0.0.1:1/dir\"\npublic_ipv4 = \"127.0.0.1\"\nresolver = \"127.0.0.1:1\"\n";

fn hostd(root: &Path, env: &[(String, String)], args: &[&str]) -> Run {
    let out = Command::new(common::BIN)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir(root)
        .output()
        .unwrap();
    Run::from(out)
}

fn reconcile(root: &Path, env: &[(String, String)], extra: &[(&str, &str)]) -> Run {
    let mut env = env.to_vec();
    env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    let mut args = vec!["reconcile", "--root", root.to_str().unwrap(), "--no-systemd", "--no-acme", "--json"];
    args.extend(DECLARE);
    hostd(root, &env, &args)
}

/// The escrowed values on the host: item name → value bytes.
fn host_values(root: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    for (file, key) in common::SECRET_ENV {
        if let Ok(text) = std::fs::read_to_string(root.join(file.trim_start_matches('/'))) {
            let v = text.lines().find_map(|l| l.strip_prefix(&format!("{key}="))).unwrap();
            out.insert(key.to_owned(), v.as_bytes().to_vec());
        }
    }
    out
}

fn escrowed(moto: &Moto) -> std::collections::BTreeMap<String, Vec<u8>> {
    use base64::Engine as _;
    moto.items(SECRET)
        .into_iter()
        .map(|(k, v)| (k, base64::engine::general_purpose::STANDARD.decode(v.as_str().unwrap()).unwrap()))
        .collect()
}

/// Every value in `run`'s output must be absent (names may appear, values never).
fn no_values(run: &Run, values: &std::collections::BTreeMap<String, Vec<u8>>) {
    for v in values.values() {
        let v = String::from_utf8_lossy(v);
        assert!(!run.stdout.contains(&*v) && !run.stderr.contains(&*v), "a secret value was printed");
    }
}

#[test]
fn a_virgin_host_escrows_before_writing_and_a_replacement_restores_byte_identical() {
    let moto = Moto::start();
    let a = common::fake_root(&config());
    let run = reconcile(a.path(), &moto.env(), &[]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let values = host_values(a.path());
    assert_eq!(values.len(), 3, "master secret and two KEKs minted");
    assert_eq!(escrowed(&moto), values, "the escrow holds exactly what the host holds");
    let got = moto.get(SECRET);
    assert_eq!(got["tags"][0]["Value"], "agentkeys-stack-test-7");
    assert_eq!(got["kms"], "alias/agentkeys-escrow-test-7", "encrypted with the stack's own key");
    assert_eq!(run.json()["escrow"], "in_sync");
    no_values(&run, &values);
    // A no-op run asks AWS nothing: with the server frozen it would time out and go pending.
    moto.freeze(true);
    let again = reconcile(a.path(), &moto.env(), &[]);
    moto.freeze(false);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(
        (again.json()["result"].as_str(), again.json()["escrow"].as_str()),
        (Some("converged"), Some("in_sync"))
    );
    // The replacement: a fresh host of the same identity restores every value byte for byte.
    let b = common::fake_root(&config());
    let run = reconcile(b.path(), &moto.env(), &[]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(host_values(b.path()), values);
    for (file, _) in common::SECRET_ENV {
        let f = file.trim_start_matches('/');
        assert_eq!(std::fs::read(a.path().join(f)).unwrap(), std::fs::read(b.path().join(f)).unwrap(), "{file}");
    }
    let summary = run.json();
    assert!(summary.get("secrets_generated").is_none(), "nothing minted on the replacement: {summary}");
    assert_eq!(summary["secrets_restored"].as_array().unwrap().len(), 3, "{summary}");
    assert_eq!(moto.get(SECRET)["version"], got["version"], "a restore writes no new version");
    let status = hostd(b.path(), &moto.env(), &["escrow", "status", "--root", b.path().to_str().unwrap(), "--json"]);
    assert_eq!(status.code, 0, "{}\n{}", status.stdout, status.stderr);
    assert_eq!(status.json()["remote"]["verdict"], "in_sync");
    no_values(&status, &values);
}

#[test]
fn a_run_killed_after_the_escrow_write_restores_and_never_mints_again() {
    let moto = Moto::start();
    let host = common::fake_root(&config());
    let killed = reconcile(host.path(), &moto.env(), &[("AGENTKEYS_HOSTD_FAILPOINT", "escrow-written")]);
    assert_eq!(killed.code, -1, "killed by its failpoint: {}", killed.stderr);
    assert!(host_values(host.path()).is_empty(), "nothing written before the escrow was read back");
    let first = escrowed(&moto);
    assert_eq!(first.len(), 3);
    let version = moto.get(SECRET)["version"].clone();
    let run = reconcile(host.path(), &moto.env(), &[]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(host_values(host.path()), first, "the escrowed values, not fresh ones");
    assert_eq!(moto.get(SECRET)["version"], version);
    // Killed after the mint, before the escrow: nothing escrowed, nothing on the host; the next
    // run mints (no value was ever used) and escrows before writing.
    let other = Moto::start();
    let host = common::fake_root(&config());
    let killed = reconcile(host.path(), &other.env(), &[("AGENTKEYS_HOSTD_FAILPOINT", "escrow-minted")]);
    assert_eq!(killed.code, -1, "{}", killed.stderr);
    assert!(host_values(host.path()).is_empty() && other.get(SECRET)["absent"] == true);
    let run = reconcile(host.path(), &other.env(), &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(escrowed(&other), host_values(host.path()));
}

#[test]
fn an_old_script_host_is_backed_up_on_its_first_run() {
    let moto = Moto::start();
    let host = common::fake_root(&config());
    let old = [
        ("etc/agentkeys/dev-key-service.env", format!("# setup-broker-host.sh\n{MASTER}={}\n", "ab".repeat(32))),
        ("etc/agentkeys/worker-creds.env", format!("AGENTKEYS_WORKER_KEK_HEX={}\n", "c1c5".repeat(16))),
        ("etc/agentkeys/worker-memory.env", format!("AGENTKEYS_MEMORY_KEK_HEX={}\n", "c2c6".repeat(16))),
        ("etc/agentkeys/worker-config.env", format!("AGENTKEYS_CONFIG_KEK_HEX={}\n", "c3c7".repeat(16))),
        ("var/lib/agentkeys/.agentkeys/broker/oidc-keypair.json", "{\"old\":\"oidc\"}\n".to_owned()),
        ("var/lib/agentkeys/.agentkeys/broker/session-keypair.json", "{\"old\":\"session\"}\n".to_owned()),
    ];
    for (p, text) in &old {
        std::fs::create_dir_all(host.path().join(p).parent().unwrap()).unwrap();
        std::fs::write(host.path().join(p), text).unwrap();
    }
    let run = reconcile(host.path(), &moto.env(), &[]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let escrow = escrowed(&moto);
    assert_eq!(escrow[MASTER], "ab".repeat(32).as_bytes());
    assert_eq!(escrow["AGENTKEYS_CONFIG_KEK_HEX"], "c3c7".repeat(16).as_bytes(), "the legacy config KEK too");
    assert_eq!(escrow["broker/oidc-keypair.json"], b"{\"old\":\"oidc\"}\n");
    assert_eq!(escrow["broker/session-keypair.json"], b"{\"old\":\"session\"}\n");
    assert_eq!(escrow.len(), 6, "{:?}", escrow.keys());
    assert!(run.json().get("secrets_generated").is_none(), "an old host's values are uploaded, never re-minted");
    assert_eq!(std::fs::read_to_string(host.path().join(old[0].0)).unwrap(), old[0].1, "kept byte for byte");
}

#[test]
fn a_conflicting_or_foreign_escrow_is_refused_with_both_sides_unchanged() {
    let moto = Moto::start();
    let host = common::fake_root(&config());
    assert_eq!(reconcile(host.path(), &moto.env(), &[]).code, 0);
    let before_host = host_values(host.path());
    // Someone re-minted the escrow's master secret: the host must not be overwritten, nor the escrow.
    let got = moto.get(SECRET);
    let mut body: serde_json::Value = serde_json::from_str(got["body"].as_str().unwrap()).unwrap();
    use base64::Engine as _;
    let other = base64::engine::general_purpose::STANDARD.encode("ef".repeat(32));
    body["items"][MASTER] = other.clone().into();
    moto.tool(&["put", SECRET, &body.to_string()]);
    let version = moto.get(SECRET)["version"].clone();
    std::fs::remove_file(host.path().join("var/lib/agentkeys-hostd/state.json")).unwrap();
    let run = reconcile(host.path(), &moto.env(), &[]);
    assert_eq!(run.code, 3, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stderr.contains(MASTER) && run.stderr.contains(SECRET), "{}", run.stderr);
    no_values(&run, &before_host);
    assert!(!run.stderr.contains(&"ef".repeat(32)));
    assert_eq!(host_values(host.path()), before_host, "the host is unchanged");
    assert_eq!(moto.get(SECRET)["version"], version, "the escrow is unchanged");
    let status = hostd(host.path(), &moto.env(), &["escrow", "status", "--root", host.path().to_str().unwrap()]);
    assert_eq!(status.code, 3, "{}", status.stdout);
    let doctor = hostd(host.path(), &moto.env(), &["doctor", "--json", "--root", host.path().to_str().unwrap()]);
    let checks: serde_json::Value = serde_json::from_str(doctor.stdout.lines().next().unwrap()).unwrap();
    let escrow = checks["checks"].as_array().unwrap().iter().find(|c| c["name"] == "escrow").unwrap().clone();
    assert_eq!(escrow["verdict"], "fail", "{escrow}");
    // Another stack's payload under this stack's name (credentials that could reach it): refused.
    let foreign = body
        .to_string()
        .replace("agentkeys-stack-test-7", "agentkeys-stack-test-8")
        .replace("https://broker-test-7.example.org", "https://broker-test-8.example.org");
    let fresh = common::fake_root(&config());
    moto.tool(&["put", SECRET, &foreign]);
    let run = reconcile(fresh.path(), &moto.env(), &[]);
    assert_eq!(run.code, 3, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("another stack") && run.stderr.contains("agentkeys-stack-test-8"), "{}", run.stderr);
    assert!(host_values(fresh.path()).is_empty(), "nothing restored from another stack's escrow");
    // A secret tagged for another stack is refused too, even with a matching payload.
    let tagged = Moto::start();
    tagged.tool(&["create", SECRET, &body.to_string().replace(&other, "AA=="), "agentkeys-stack-base"]);
    let run = reconcile(common::fake_root(&config()).path(), &tagged.env(), &[]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(run.stderr.contains("agentkeys:stack=agentkeys-stack-base"), "{}", run.stderr);
}

#[test]
fn an_unreachable_escrow_refuses_a_virgin_host_and_leaves_an_existing_one_pending() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let down = vec![
        ("AWS_ACCESS_KEY_ID".to_owned(), "test".to_owned()),
        ("AWS_SECRET_ACCESS_KEY".to_owned(), "test".to_owned()),
        ("AWS_EC2_METADATA_DISABLED".to_owned(), "true".to_owned()),
        ("AWS_ENDPOINT_URL_SECRETS_MANAGER".to_owned(), format!("http://127.0.0.1:{closed}")),
    ];
    let virgin = common::fake_root(&config());
    let run = reconcile(virgin.path(), &down, &[]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("refusing to mint") && run.stderr.contains(SECRET), "{}", run.stderr);
    assert!(host_values(virgin.path()).is_empty(), "nothing minted");
    assert!(!virgin.path().join("etc/systemd/system/agentkeys-broker.service").exists(), "nothing written");
    // A host that has its secrets goes on, pending; status and doctor say so; the next run retries.
    let moto = Moto::start();
    let host = common::fake_root(&config());
    assert_eq!(reconcile(host.path(), &moto.env(), &[]).code, 0);
    std::fs::remove_file(host.path().join("var/lib/agentkeys-hostd/state.json")).unwrap();
    let run = reconcile(host.path(), &down, &[]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.json()["escrow"], "pending", "{}", run.stdout);
    let root = host.path().to_str().unwrap();
    let status = hostd(host.path(), &down, &["status", "--root", root]);
    assert!(status.stdout.contains("escrow: PENDING"), "{}", status.stdout);
    let doctor = hostd(host.path(), &down, &["doctor", "--json", "--root", root]);
    let checks: serde_json::Value = serde_json::from_str(doctor.stdout.lines().next().unwrap()).unwrap();
    let escrow = checks["checks"].as_array().unwrap().iter().find(|c| c["name"] == "escrow").unwrap().clone();
    assert_eq!(escrow["verdict"], "warn", "{escrow}");
    let back = reconcile(host.path(), &moto.env(), &[]);
    assert_eq!(back.code, 0, "{}", back.stderr);
    assert_eq!(back.json()["escrow"], "in_sync", "an operator's run retries at once: {}", back.stdout);
    // Switched off explicitly: no AWS call at all, doctor warns.
    let off = common::fake_root(&format!("{BASE_CONFIG}{LOOPBACK_ONLY}"));
    assert_eq!(reconcile(off.path(), &down, &[]).code, 0);
    let doctor = hostd(off.path(), &down, &["doctor", "--json", "--root", off.path().to_str().unwrap()]);
    assert!(doctor.stdout.contains("OFF ([escrow] enabled = false)"), "{}", doctor.stdout);
}

/// An escrow the host may read but not write (moto's IAM enforced after the setup's calls; a
/// principal allowed only DescribeSecret and GetSecretValue), the secret as CloudFormation creates
/// it (its empty marker): a virgin host reads it, mints, is denied the write and stops with nothing
/// written (exit 1); an existing host goes on with its own values and the escrow pending. (moto
/// authorizes Secrets Manager calls against the resource `*` only, so the rendered policy's
/// resource scoping is checked in cloud_render.rs, not here.)
#[test]
fn a_denied_escrow_write_leaves_a_virgin_host_unminted_and_an_existing_one_pending() {
    let scratch = tempfile::tempdir().unwrap();
    let mut args = vec!["cloud", "render", "--root", scratch.path().to_str().unwrap(), "--region", "us-east-1"];
    args.extend(DECLARE);
    let template = hostd(scratch.path(), &[], &args);
    assert_eq!(template.code, 0, "{}", template.stderr);
    let t: serde_json::Value = serde_json::from_str(&template.stdout).unwrap();
    let marker = t["Resources"]["EscrowSecret"]["Properties"]["SecretString"].as_str().unwrap().to_owned();
    let read_only = serde_json::json!({ "Version": "2012-10-17", "Statement": [{
        "Effect": "Allow",
        "Action": ["secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue"],
        "Resource": "*",
    }]})
    .to_string();
    // Setup before authorization starts: a user (3 calls) and the stack's secret (1).
    let moto = Moto::start_with_auth_after(4);
    let (id, secret) = moto.iam_user("reader", &read_only);
    moto.tool(&["create", SECRET, &marker, "agentkeys-stack-test-7"]);
    let mut env = moto.env();
    env.retain(|(k, _)| k != "AWS_ACCESS_KEY_ID" && k != "AWS_SECRET_ACCESS_KEY");
    env.extend([("AWS_ACCESS_KEY_ID".to_owned(), id), ("AWS_SECRET_ACCESS_KEY".to_owned(), secret)]);
    let virgin = common::fake_root(&config());
    let run = reconcile(virgin.path(), &env, &[]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("refusing to install the freshly minted"), "{}", run.stderr);
    assert!(run.stderr.contains(SECRET) && run.stderr.contains("failed to write"), "{}", run.stderr);
    assert!(host_values(virgin.path()).is_empty(), "nothing written when the escrow write is denied");
    assert!(!virgin.path().join("etc/systemd/system/agentkeys-broker.service").exists());
    let existing = common::fake_root(&config());
    let kept = format!("{MASTER}={}\n", "ab".repeat(32));
    std::fs::write(existing.path().join("etc/agentkeys/dev-key-service.env"), &kept).unwrap();
    std::fs::write(
        existing.path().join("etc/agentkeys/worker-creds.env"),
        format!("AGENTKEYS_WORKER_KEK_HEX={}\n", "c1c5".repeat(16)),
    )
    .unwrap();
    std::fs::write(
        existing.path().join("etc/agentkeys/worker-memory.env"),
        format!("AGENTKEYS_MEMORY_KEK_HEX={}\n", "c2c6".repeat(16)),
    )
    .unwrap();
    let run = reconcile(existing.path(), &env, &[]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.json()["escrow"], "pending", "{}", run.stdout);
    assert_eq!(std::fs::read_to_string(existing.path().join("etc/agentkeys/dev-key-service.env")).unwrap(), kept);
}
