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

/// `date -u` of a unix time, as `openssl ca` takes it.
fn stamp(unix: i64) -> String {
    let out =
        std::process::Command::new("date").args(["-u", "-d", &format!("@{unix}"), "+%Y%m%d%H%M%SZ"]).output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// A certificate for `host` valid from `start` to `end` (unix), signed by a throwaway CA.
fn certificate(dir: &std::path::Path, host: &str, start: i64, end: i64) -> (String, String) {
    let run = |args: &[&str]| common::pebble::openssl(args, dir);
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
    run(&[&["req", "-x509"][..], &ec, &["-subj", "/CN=ca", "-keyout", "ca.key", "-out", "ca.pem"]].concat());
    run(&[&["req"][..], &ec, &["-subj", &format!("/CN={host}"), "-keyout", "leaf.key", "-out", "leaf.csr"]].concat());
    std::fs::create_dir_all(dir.join("newcerts")).unwrap();
    std::fs::write(dir.join("index.txt"), "").unwrap();
    std::fs::write(dir.join("serial"), "1000\n").unwrap();
    std::fs::write(
        dir.join("ca.cnf"),
        "[ca]\ndefault_ca=c\n[c]\ndir=.\ndatabase=index.txt\nnew_certs_dir=newcerts\nserial=serial\ndefault_md=sha256\npolicy=p\n[p]\ncommonName=supplied\n",
    )
    .unwrap();
    let (s, e) = (stamp(start), stamp(end));
    run(&[
        "ca",
        "-batch",
        "-config",
        "ca.cnf",
        "-cert",
        "ca.pem",
        "-keyfile",
        "ca.key",
        "-in",
        "leaf.csr",
        "-out",
        "leaf.pem",
        "-startdate",
        &s,
        "-enddate",
        &e,
        "-notext",
    ]);
    (std::fs::read_to_string(dir.join("leaf.pem")).unwrap(), std::fs::read_to_string(dir.join("leaf.key")).unwrap())
}

#[test]
fn an_overdue_certificate_and_a_paused_host_fail_doctor_and_show_in_status() {
    let root = common::fake_root(&format!(
        "{}\n[acme]\ndirectory_url = \"https://127.0.0.1:1/dir\"\npublic_ipv4 = \"127.0.0.1\"\n",
        common::BASE_CONFIG
    ));
    let r = root.path();
    let run = common::reconcile(r, &["--ci", "--slot", "2", "--zone", "litentry.org", "--account-id", common::ACCOUNT]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    // The broker's certificate: 39 days long, renewal (1/3 left) four days ago — past the grace.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let broker = "broker-test-2.litentry.org";
    let pki = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(pki.path(), broker, now - 30 * 86_400, now + 9 * 86_400 + 3_600);
    let store = r.join(format!("var/lib/agentkeys-hostd/tls/{broker}/current"));
    std::fs::create_dir_all(&store).unwrap();
    std::fs::write(store.join("fullchain.pem"), cert).unwrap();
    std::fs::write(store.join("privkey.pem"), key).unwrap();
    // The signer's host: the CA paused ordering for it.
    let signer = "signer-test-2.litentry.org";
    let url = "https://portal.example-ca.test/sfe/v1/unpause?jwt=abc.def.ghi";
    let ledger = serde_json::json!({ signer: {
        "failures": 5, "last_failure": now - 60, "next_attempt": now + 3600, "last_error_class": "rateLimited", "unpause_url": url
    }});
    std::fs::create_dir_all(r.join("var/lib/agentkeys-hostd/acme")).unwrap();
    std::fs::write(r.join("var/lib/agentkeys-hostd/acme/ledger.json"), ledger.to_string()).unwrap();

    let doctor = common::run_in(r, &["doctor", "--root", r.to_str().unwrap(), "--json"]);
    assert_eq!(doctor.code, 1, "{}", doctor.stdout);
    let checks = doctor.json()["checks"].as_array().unwrap().clone();
    let find = |name: String| {
        checks.iter().find(|c| c["name"] == name.as_str()).cloned().unwrap_or_else(|| panic!("{name}: {checks:?}"))
    };
    let cert_check = find(format!("certificate {broker}"));
    assert_eq!(cert_check["verdict"], "fail", "{cert_check}");
    assert!(cert_check["detail"].as_str().unwrap().starts_with("overdue: renewal "), "{cert_check}");
    let pause = find(format!("acme {signer}"));
    assert_eq!(pause["verdict"], "fail");
    assert!(pause["detail"].as_str().unwrap().contains(url), "{pause}");

    let status = common::run_in(r, &["status", "--root", r.to_str().unwrap(), "--json"]);
    let st: serde_json::Value = serde_json::from_str(status.stdout.lines().next().unwrap()).unwrap();
    let renewal = st["renewals"].as_array().unwrap().iter().find(|x| x["host"] == broker).unwrap().clone();
    assert_eq!(renewal["overdue"], true, "{renewal}");
    assert!(renewal["not_after_rfc3339"].as_str().unwrap().ends_with('Z'), "{renewal}");
    assert_eq!(st["acme_ledger"][signer]["unpause_url"], url);
    let text = common::run_in(r, &["status", "--root", r.to_str().unwrap()]);
    assert!(text.stdout.contains("OVERDUE") && text.stdout.contains(url), "{}", text.stdout);
    assert!(
        text.stdout.contains(", not after 20") && text.stdout.contains(" (in 9 d)"),
        "readable times: {}",
        text.stdout
    );
}
