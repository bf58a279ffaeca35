//! The cross-wire guard (spec §1.1): a deployed slot-N host refuses every contradicting input with
//! exit 3 and an untouched tree; consistent inputs and flagless runs adopt the deployed identity.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::{ACCOUNT, BASE_CONFIG, assert_same, reconcile, snapshot};

fn deployed_slot(slot: &str) -> tempfile::TempDir {
    let root = common::fake_root(BASE_CONFIG);
    let run = reconcile(root.path(), &["--ci", "--slot", slot, "--zone", "litentry.org", "--account-id", ACCOUNT]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    root
}

fn refused(root: &Path, args: &[&str], code: i32) -> String {
    let before = snapshot(root);
    let run = reconcile(root, args);
    assert_eq!(run.code, code, "{args:?}: {}{}", run.stdout, run.stderr);
    assert!(run.stdout.is_empty(), "{args:?} printed {}", run.stdout);
    assert_same(&before, &snapshot(root), &format!("{args:?}"));
    run.stderr
}

#[test]
fn contradicting_selectors_exit_3_and_change_nothing() {
    let root = deployed_slot("4");
    let r = root.path();
    let env = r.join("prod.env");
    std::fs::write(&env, "ZONE=litentry.org\nBROKER_HOST=broker.${ZONE}\n").unwrap();
    let env = env.to_str().unwrap().to_owned();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--base"], "the base stack"),
        (vec!["--ci", "--slot", "2"], "test slot 2"),
        (vec!["--ci", "--slot", "1"], "test slot 1"),
        (vec!["--test", "--slot", "5"], "test slot 5"),
        (vec!["--zone", "example.org"], "zone example.org"),
        (vec!["--ci", "--zone", "litentry.com"], "zone litentry.com"),
        (vec!["--issuer-url", "https://broker.litentry.org"], "prod in zone litentry.org"),
        (vec!["--issuer-url", "https://test-broker.litentry.org"], "test slot 1"),
        (vec!["--issuer-url", "https://broker-test-4.example.org"], "zone example.org"),
        (vec!["--env-file", env.as_str()], "prod in zone litentry.org"),
    ];
    for (args, asks) in cases {
        let err = refused(r, &args, 3);
        assert!(
            err.contains("identity conflict") && err.contains("test slot 4 in zone litentry.org"),
            "{args:?}: {err}"
        );
        assert!(err.contains(asks), "{args:?} names what it asked for ({asks}): {err}");
        assert!(err.contains("remove /etc/systemd/system/agentkeys-broker.service and /etc/agentkeys"), "{err}");
    }
    let drop = r.join("etc/agentkeys/hostd.d");
    std::fs::create_dir_all(&drop).unwrap();
    std::fs::write(drop.join("50-stack.toml"), "[identity]\nstack = \"base\"\n").unwrap();
    let err = refused(r, &[], 3);
    assert!(err.contains("hostd.d/50-stack.toml: key `identity.stack`"), "{err}");
    std::fs::remove_dir_all(&drop).unwrap();
}

#[test]
fn base_with_ci_is_always_usage_error() {
    let root = deployed_slot("4");
    let err = refused(root.path(), &["--base", "--ci"], 2);
    assert!(err.contains("--base --ci"), "{err}");
    let virgin = common::fake_root(BASE_CONFIG);
    refused(virgin.path(), &["--base", "--ci", "--zone", "litentry.org", "--account-id", ACCOUNT], 2);
}

#[test]
fn consistent_inputs_adopt_the_deployed_identity() {
    let root = deployed_slot("4");
    let r = root.path();
    for args in [
        vec![],
        vec!["--ci"],
        vec!["--test"],
        vec!["--ci", "--slot", "4"],
        vec!["--zone", "litentry.org"],
        vec!["--issuer-url", "https://broker-test-4.litentry.org"],
    ] {
        let mut a = args.clone();
        a.push("--json");
        let run = reconcile(r, &a);
        assert_eq!(run.code, 0, "{args:?}: {}", run.stderr);
        let s = run.json();
        assert_eq!((s["identity"]["slot"].as_u64(), s["changed"].as_u64()), (Some(4), Some(0)), "{args:?}");
    }
}

#[test]
fn an_old_script_host_is_identified_from_its_broker_unit() {
    let root = common::fake_root(BASE_CONFIG);
    let r = root.path();
    std::fs::create_dir_all(r.join("etc/systemd/system")).unwrap();
    let unit = "[Unit]\nDescription=old\n[Service]\nEnvironment=\"BROKER_OIDC_ISSUER=https://broker-test-3.litentry.org\"\nEnvironment=ACCOUNT_ID=429071895007\nExecStart=/usr/local/bin/agentkeys-broker-server\n";
    std::fs::write(r.join("etc/systemd/system/agentkeys-broker.service"), unit).unwrap();
    let id = common::run_in(r, &["identity", "--root", r.to_str().unwrap(), "--json"]).json();
    assert_eq!((id["slot"].as_u64(), id["deployed"].as_bool()), (Some(3), Some(true)), "{id}");
    assert_eq!(id["buckets"]["vault"], "agentkeys-vault-test-3-429071895007", "account id read from the old unit");
    let err = refused(r, &["--ci", "--slot", "2"], 3);
    assert!(err.contains("read from /etc/systemd/system/agentkeys-broker.service"), "{err}");
    let run = reconcile(r, &["--json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.json()["notes"].to_string().contains("adopted"), "{}", run.stdout);
}

#[test]
fn invalid_deployed_issuers_are_refused_with_the_reason() {
    for (issuer, why) in [
        ("https://broker-test-1.litentry.org", "never broker-test-1"),
        ("https://broker-test-02.litentry.org", "leading zeros"),
        ("https://broker.litentry.org/", "trailing slash"),
        ("http://broker.litentry.org", "https://"),
        ("https://broker.litentry.org:8443", "no port"),
        ("https://mcp.litentry.org", "first label"),
    ] {
        let root = common::fake_root(BASE_CONFIG);
        let r = root.path();
        std::fs::create_dir_all(r.join("etc/systemd/system")).unwrap();
        std::fs::write(
            r.join("etc/systemd/system/agentkeys-broker.service"),
            format!("[Service]\nEnvironment=BROKER_OIDC_ISSUER={issuer}\n"),
        )
        .unwrap();
        let err = refused(r, &[], 2);
        assert!(err.contains(why) && err.contains("agentkeys-broker.service"), "{issuer}: {err}");
    }
}

#[test]
fn a_hand_edited_issuer_disagreeing_with_hostds_record_is_a_conflict() {
    let root = deployed_slot("4");
    let r = root.path();
    let unit = r.join("etc/systemd/system/agentkeys-broker.service");
    std::fs::write(&unit, std::fs::read_to_string(&unit).unwrap().replace("broker-test-4.", "broker-test-5.")).unwrap();
    let err = refused(r, &[], 3);
    assert!(err.contains("identity.json") && err.contains("test slot 4"), "{err}");
}

#[test]
fn removing_only_the_unit_does_not_repurpose() {
    let root = deployed_slot("4");
    let r = root.path();
    std::fs::remove_file(r.join("etc/systemd/system/agentkeys-broker.service")).unwrap();
    let err = refused(r, &["--base"], 3);
    assert!(err.contains("identity.json"), "{err}");
    let run = reconcile(r, &["--json"]);
    assert_eq!(
        (run.code, run.json()["changed"].as_u64()),
        (0, Some(1)),
        "the unit is restored from the record: {}",
        run.stdout
    );
}

#[test]
fn repurposing_deliberately_works() {
    let root = deployed_slot("4");
    let r = root.path();
    std::fs::remove_file(r.join("etc/systemd/system/agentkeys-broker.service")).unwrap();
    std::fs::remove_dir_all(r.join("etc/agentkeys")).unwrap();
    std::fs::create_dir_all(r.join("etc/agentkeys")).unwrap();
    std::fs::write(r.join("etc/agentkeys/hostd.toml"), BASE_CONFIG).unwrap();
    // /etc/agentkeys is back with only the operator's config; hostd's stale record must not block.
    let run = reconcile(r, &["--ci", "--slot", "6", "--zone", "litentry.org", "--account-id", ACCOUNT, "--json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.json()["identity"]["issuer"], "https://broker-test-6.litentry.org");
}
