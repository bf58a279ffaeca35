//! `doctor` on a fake root, offline: the checks that depend on the root and the configuration fail
//! or warn with what to do, and a failing check makes the exit code 1. (The all-pass case runs on a
//! real host with Pebble in tests/deb_package.rs.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

#[test]
fn an_unreachable_ca_fails_and_an_undeployed_host_warns() {
    // Nothing listens on 127.0.0.1:1: the ACME directory is unreachable.
    let root = common::fake_root("[acme]\ndirectory_url = \"https://127.0.0.1:1/dir\"\npublic_ipv4 = \"127.0.0.1\"\n");
    let r = root.path();
    let run = common::run_in(r, &["doctor", "--root", r.to_str().unwrap(), "--json"]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    let checks = run.json()["checks"].as_array().unwrap().clone();
    let find = |name: &str| checks.iter().find(|c| c["name"] == name).unwrap_or_else(|| panic!("{name}: {checks:?}"));
    let acme = find("acme directory");
    assert_eq!(acme["verdict"], "fail");
    assert!(acme["detail"].as_str().unwrap().contains("https://127.0.0.1:1/dir unreachable"), "{acme}");
    assert!(acme["detail"].as_str().unwrap().contains("acme.directory_url"), "says what to check: {acme}");
    assert_eq!(find("units lint")["verdict"], "warn");
    assert_eq!(find("dns")["verdict"], "warn");
    assert_eq!(find("disk /var/lib")["verdict"], "pass");
    // The fake root has no /etc/ssl/certs: the broker would panic at start without a trust store.
    let trust = find("trust store");
    assert_eq!(trust["verdict"], "fail");
    assert!(trust["detail"].as_str().unwrap().contains("apt-get install ca-certificates"), "{trust}");
    // The text form says the same, one line per check and a count.
    let text = common::run_in(r, &["doctor", "--root", r.to_str().unwrap()]);
    assert_eq!(text.code, 1);
    assert!(text.stdout.contains("FAIL  acme directory") && text.stdout.lines().last().unwrap().ends_with("failed"));
}

#[test]
fn a_trust_store_with_certificates_passes() {
    let root = common::fake_root("");
    let r = root.path();
    std::fs::create_dir_all(r.join("etc/ssl/certs")).unwrap();
    let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    std::fs::write(r.join("etc/ssl/certs/ca-certificates.crt"), pem.repeat(3)).unwrap();
    let run = common::run_in(r, &["doctor", "--root", r.to_str().unwrap(), "--json"]);
    let checks = run.json()["checks"].as_array().unwrap().clone();
    let trust = checks.iter().find(|c| c["name"] == "trust store").expect("a trust store check");
    assert_eq!(trust["verdict"], "pass", "{trust}");
    assert!(trust["detail"].as_str().unwrap().starts_with("3 certificates"), "{trust}");
}

#[test]
fn a_bad_configuration_is_a_failed_check_naming_the_key() {
    let root = common::fake_root("[acme]\ndirectory_url = \"ftp://ca.example.org/dir\"\n");
    let r = root.path();
    let run = common::run_in(r, &["doctor", "--root", r.to_str().unwrap(), "--json"]);
    assert_eq!(run.code, 1);
    let checks = run.json()["checks"].as_array().unwrap().clone();
    let config = checks.iter().find(|c| c["name"] == "config").expect("a config check");
    assert_eq!(config["verdict"], "fail");
    assert!(config["detail"].as_str().unwrap().contains("acme.directory_url"), "{config}");
}
