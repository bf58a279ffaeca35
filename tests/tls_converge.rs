//! Certificates on a real host: Pebble and challtestsrv run inside the container (its own network
//! namespace), nginx is the container's real unit, and `reconcile` orders, installs, flips the
//! vhosts to HTTPS and reloads nginx through systemd. Served certificates are checked with an SNI
//! handshake from inside that namespace.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use common::container::Container;
use common::in_container::{ACME, clear_a, in_netns, installed_serial, served_serial, set_a, start_pebble};
use common::{ACCOUNT, BASE_CONFIG};

#[test]
fn hosts_are_issued_served_and_a_parked_host_follows_its_dns() {
    let c = Container::boot(&format!("{BASE_CONFIG}\n{ACME}"));
    let dir = tempfile::tempdir().unwrap();
    start_pebble(&c, dir.path(), 80);
    let parked = "email-test-2.litentry.org";
    set_a(&c, parked, "127.0.0.9");
    // A certificate the old tooling left behind: adopted and served as-is, not re-issued.
    let adopted = "audit-test-2.litentry.org";
    let le = dir.path().join("le");
    std::fs::create_dir_all(&le).unwrap();
    let (subj, san) = (format!("/CN={adopted}"), format!("subjectAltName=DNS:{adopted}"));
    let args = ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "90"];
    common::pebble::openssl(
        &[&args[..], &["-subj", &subj, "-addext", &san, "-keyout", "privkey.pem", "-out", "fullchain.pem"]].concat(),
        &le,
    );
    for f in ["fullchain.pem", "privkey.pem"] {
        c.install(le.join(f).to_str().unwrap(), &format!("/etc/letsencrypt/live/{adopted}/{f}"));
    }
    let run = c.reconcile_acme(&["--ci", "--slot", "2", "--zone", "litentry.org", "--account-id", ACCOUNT]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let s = run.json();
    let tls = s["tls"].as_object().unwrap();
    assert_eq!(tls.len(), 8);
    // Each service starts once, although the run re-plans after installing its certificates.
    for unit in common::units() {
        let once = |l: &&str| {
            l.starts_with(&format!("done: start {unit}.service"))
                || l.starts_with(&format!("done: restart {unit}.service"))
        };
        assert_eq!(run.stdout.lines().filter(once).count(), 1, "{unit}:\n{}", run.stdout);
    }
    assert_eq!(s["parked"], 1, "{}", run.stdout);
    assert!(tls[parked].as_str().unwrap().starts_with("dns_not_ready"), "{tls:?}");
    let issuing = dir.path().join("issuing-root.pem");
    let out = in_netns(
        &c,
        &["curl", "-sf", "--cacert", dir.path().join("ca.pem").to_str().unwrap(), "https://127.0.0.1:15000/roots/0"],
    );
    std::fs::write(&issuing, &out.stdout).unwrap();
    let adopted_pem = le.join("fullchain.pem");
    let le_serial =
        Command::new("openssl").args(["x509", "-noout", "-serial", "-in"]).arg(&adopted_pem).output().unwrap();
    let connect = format!(
        "echo | openssl s_client -connect 127.0.0.1:443 -servername {adopted} 2>/dev/null | openssl x509 -noout -serial"
    );
    let served = in_netns(&c, &["bash", "-c", &connect]);
    assert_eq!(served.stdout, le_serial.stdout, "the adopted certificate is served");
    assert!(tls[adopted].as_str().unwrap().starts_with("https 8"), "adopted, not re-issued: {}", tls[adopted]);
    let vhost = String::from_utf8(c.read(&format!("/etc/nginx/sites-available/{adopted}.conf"))).unwrap();
    assert!(vhost.contains(&format!("ssl_certificate /etc/letsencrypt/live/{adopted}/fullchain.pem;")));
    for (host, state) in tls {
        if host == parked || host == adopted {
            continue;
        }
        assert!(state.as_str().unwrap().starts_with("issued"), "{host}: {state}");
        let served = served_serial(&c, host, &issuing);
        assert!(served.starts_with("serial="), "{host}: handshake failed or not verified: {served:?}");
        assert_eq!(served, installed_serial(&c, host), "{host} serves the certificate just installed");
        let vhost = String::from_utf8(c.read(&format!("/etc/nginx/sites-available/{host}.conf"))).unwrap();
        assert!(vhost.contains("(https)") && vhost.contains("listen 443 ssl"), "{host}");
    }
    let ledger = std::fs::read_to_string(c.path("/var/lib/agentkeys-hostd/acme/ledger.json")).unwrap_or_default();
    let status = c.exec(&["/usr/bin/agentkeys-hostd", "status", "--json"]);
    let st: serde_json::Value = serde_json::from_str(status.stdout.lines().next().unwrap()).unwrap();
    assert_eq!(st["certificates"]["broker-test-2.litentry.org"]["state"], "https", "{}", status.stdout);
    assert!(st["certificates"]["broker-test-2.litentry.org"]["not_after"].as_i64().is_some());
    assert!(!ledger.contains(parked), "no order, so no failure, for a parked host: {ledger}");
    assert!(!c.path(&format!("/var/lib/agentkeys-hostd/tls/{parked}")).exists());
    let vhost = String::from_utf8(c.read(&format!("/etc/nginx/sites-available/{parked}.conf"))).unwrap();
    assert!(vhost.contains("(http-placeholder)"), "the parked host keeps its placeholder");

    // The OIDC helper: discovery verified through nginx, thumbprint of the chain's top certificate.
    let oidc = c.exec(&["/usr/bin/agentkeys-hostd", "oidc", "--json"]);
    assert_eq!(oidc.code, 0, "{}\n{}", oidc.stdout, oidc.stderr);
    let o: serde_json::Value = serde_json::from_str(oidc.stdout.lines().next().unwrap()).unwrap();
    let chain =
        String::from_utf8(c.read("/var/lib/agentkeys-hostd/tls/broker-test-2.litentry.org/current/fullchain.pem"))
            .unwrap();
    let top = &chain[chain.rfind("-----BEGIN CERTIFICATE-----").unwrap()..];
    let top_file = dir.path().join("top.pem");
    std::fs::write(&top_file, top).unwrap();
    let fp = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha1", "-in"])
        .arg(&top_file)
        .output()
        .unwrap();
    let fp =
        String::from_utf8_lossy(&fp.stdout).trim().rsplit('=').next().unwrap().replace(':', "").to_ascii_lowercase();
    assert_eq!(o["thumbprint"], fp.as_str());
    assert_eq!(o["discovery_issuer_matches"], true);
    assert_eq!(
        o["command"],
        format!(
            "aws iam create-open-id-connect-provider --url https://broker-test-2.litentry.org --client-id-list sts.amazonaws.com --thumbprint-list {fp}"
        )
    );

    // DNS fixed: the next run issues it and flips its vhost; the others are left alone.
    clear_a(&c, parked); // back to challtestsrv's default answer, 127.0.0.1
    let others = || tls.keys().filter(|h| *h != parked && *h != adopted);
    let before: Vec<String> = others().map(|h| installed_serial(&c, h)).collect();
    let run = c.reconcile_acme(&[]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let s = run.json();
    assert!(s["tls"][parked].as_str().unwrap().starts_with("issued"), "{}", run.stdout);
    assert_eq!(served_serial(&c, parked, &issuing), installed_serial(&c, parked));
    let after: Vec<String> = others().map(|h| installed_serial(&c, h)).collect();
    assert_eq!(before, after, "no other host was re-issued");
    assert!(s["tls"].as_object().unwrap().values().filter(|v| v.as_str().unwrap().starts_with("https")).count() == 7);

    // Converged: nothing to order, nothing to write.
    let run = c.reconcile_acme(&[]);
    assert_eq!((run.code, run.json()["changed"].as_u64()), (0, Some(0)), "{}", run.stdout);
    assert!(!run.stdout.contains("issued"), "{}", run.stdout);
}

#[test]
fn ten_runs_against_failing_validation_make_one_failed_order_per_host() {
    let c = Container::boot(&format!("{BASE_CONFIG}\n{ACME}"));
    let dir = tempfile::tempdir().unwrap();
    start_pebble(&c, dir.path(), 5002); // nothing listens there: every validation fails
    let declare = ["--ci", "--slot", "2", "--zone", "litentry.org", "--account-id", ACCOUNT];
    for run_no in 0..10 {
        let t = std::time::Instant::now();
        let run = c.reconcile_acme(if run_no == 0 { &declare } else { &[] });
        let took = t.elapsed();
        assert!(took < std::time::Duration::from_secs(60), "run {run_no} took {took:?}");
        let s = run.json();
        let states: Vec<String> =
            s["tls"].as_object().unwrap().values().map(|v| v.as_str().unwrap().to_owned()).collect();
        if run_no == 0 {
            assert_eq!(run.code, 1, "failed orders fail the run: {}", run.stderr);
            assert!(states.iter().all(|v| v == "failed"), "{states:?}");
            assert!(run.stderr.contains("certificates could not be obtained for 8 host(s)"), "{}", run.stderr);
        } else {
            assert_eq!(run.code, 0, "waiting out a backoff is not a failure: {}", run.stderr);
            assert!(states.iter().all(|v| v == "backoff"), "run {run_no}: {states:?}");
        }
    }
    let status = c.exec(&["/usr/bin/agentkeys-hostd", "status", "--json"]);
    let st: serde_json::Value = serde_json::from_str(status.stdout.lines().next().unwrap()).unwrap();
    assert_eq!(st["acme_ledger"].as_object().map(|l| l.len()), Some(8), "status shows the ledger: {}", status.stdout);
    let ledger: serde_json::Value =
        serde_json::from_slice(&c.read("/var/lib/agentkeys-hostd/acme/ledger.json")).unwrap();
    let hosts = ledger.as_object().unwrap();
    assert_eq!(hosts.len(), 8);
    for (host, entry) in hosts {
        assert_eq!(entry["failures"], 1, "{host}: one failed order in ten runs");
        assert_eq!(entry["next_attempt"].as_i64().unwrap() - entry["last_failure"].as_i64().unwrap(), 3600, "{host}");
    }
    let meta = std::fs::metadata(c.path("/var/lib/agentkeys-hostd/acme/ledger.json")).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::mode(&meta) & 0o777, 0o600);
}

#[test]
fn all_eight_hosts_are_served_and_a_template_that_breaks_nginx_is_rolled_back() {
    let c = Container::boot(&format!("{BASE_CONFIG}\n{ACME}"));
    let dir = tempfile::tempdir().unwrap();
    start_pebble(&c, dir.path(), 80);
    let run = c.reconcile_acme(&["--ci", "--slot", "2", "--zone", "litentry.org", "--account-id", ACCOUNT]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let issuing = dir.path().join("issuing-root.pem");
    let ca = dir.path().join("ca.pem");
    let out = in_netns(&c, &["curl", "-sf", "--cacert", ca.to_str().unwrap(), "https://127.0.0.1:15000/roots/0"]);
    std::fs::write(&issuing, &out.stdout).unwrap();
    let tls = run.json()["tls"].as_object().unwrap().clone();
    assert_eq!(tls.len(), 8);
    for (h, state) in &tls {
        assert!(state.as_str().unwrap().starts_with("issued"), "{h}: {state}");
        assert_eq!(
            served_serial(&c, h, &issuing),
            installed_serial(&c, h),
            "{h}: verified against Pebble's root, same serial"
        );
    }
    let host = "broker-test-2.litentry.org";
    let vhost_path = format!("/etc/nginx/sites-available/{host}.conf");
    let vhost = c.read(&vhost_path);
    let serial = installed_serial(&c, host);

    // An operator override with a directive nginx does not know.
    let template =
        include_str!("../templates/nginx-vhost.conf.tera").replacen("server {", "server {\n    bogus_directive on;", 1);
    c.write("/etc/agentkeys/templates/nginx-vhost.conf.tera", &template);
    let run = c.reconcile_acme(&[]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("nginx -t rejected the new configuration"), "{}", run.stderr);
    assert!(
        run.stderr.contains("bogus_directive") && run.stderr.contains(&format!("{host}.conf")),
        "names the file: {}",
        run.stderr
    );
    assert_eq!(c.read(&vhost_path), vhost, "the previous vhost is back on disk");
    assert_eq!(served_serial(&c, host, &issuing), serial, "the previous configuration keeps serving");
    assert!(!run.stdout.contains("done: reload nginx"), "{}", run.stdout);

    std::fs::remove_file(c.path("/etc/agentkeys/templates/nginx-vhost.conf.tera")).unwrap();
    let run = c.reconcile_acme(&[]);
    assert_eq!((run.code, run.json()["changed"].as_u64()), (0, Some(0)), "{}", run.stdout);
}

/// Pebble's example EAB HMAC key (base64url), for the fallback CA that requires a binding.
const EAB_KEY: &str = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W";
const PRIMARY: &str = "https://127.0.0.1:14000/dir";
const FALLBACK: &str = "https://127.0.0.1:14100/dir";

/// A second Pebble on 14100/15100 that requires an external account binding.
fn start_fallback_pebble(c: &Container, validity_secs: u64) {
    let config = format!(
        r#"{{"pebble":{{"listenAddress":"127.0.0.1:14100","managementListenAddress":"127.0.0.1:15100","certificate":"cert.pem","privateKey":"key.pem","httpPort":80,"tlsPort":5001,"ocspResponderURL":"","externalAccountBindingRequired":true,"externalAccountMACKeys":{{"kid-1":"{EAB_KEY}"}},"certificateValidityPeriod":{validity_secs}}}}}"#
    );
    c.write("/etc/pebble/pebble-fallback.json", &config);
    common::in_container::run_pebble(c, "pebble-fallback", "pebble-fallback.json", &[]);
    let probe = "for i in $(seq 100); do exec 3<>/dev/tcp/127.0.0.1/14100 && exit 0; sleep 0.1; done; exit 1";
    assert_eq!(c.exec(&["bash", "-c", probe]).code, 0, "the fallback Pebble listens");
}

/// What CA each host's order went to in a run.
fn cas_of(run: &common::Run) -> std::collections::BTreeMap<String, String> {
    let s = run.json();
    s["ca"]
        .as_object()
        .map(|m| m.iter().map(|(h, v)| (h.clone(), v.as_str().unwrap().to_owned())).collect())
        .unwrap_or_default()
}

#[test]
fn a_fallback_ca_issues_while_the_primary_is_down_and_keeps_its_hosts_until_it_fails() {
    let config = format!(
        "{BASE_CONFIG}\n{ACME}[acme.fallback]\ndirectory_url = \"{FALLBACK}\"\nca_bundle = \"/etc/pebble/ca.pem\"\neab_kid = \"kid-1\"\neab_hmac_key_file = \"/etc/agentkeys/eab.key\"\n"
    );
    let c = Container::boot(&config);
    c.write("/etc/agentkeys/eab.key", &format!("{EAB_KEY}\n"));
    let dir = tempfile::tempdir().unwrap();
    // Certificates live 60 s at both CAs: renewal is due after 30 s.
    common::in_container::start_pebble_with(&c, dir.path(), 80, Some(60));
    assert_eq!(c.exec(&["systemctl", "stop", "pebble"]).code, 0, "the primary CA is down");
    start_fallback_pebble(&c, 60);

    let declare = ["--ci", "--slot", "2", "--zone", "litentry.org", "--account-id", ACCOUNT];
    let run = c.reconcile_acme(&declare);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let cas = cas_of(&run);
    assert_eq!(cas.len(), 8, "{}", run.stdout);
    assert!(cas.values().all(|ca| ca == FALLBACK), "every host from the fallback: {cas:?}");
    let ca = dir.path().join("ca.pem");
    let roots = |port: u16| {
        let url = format!("https://127.0.0.1:{port}/roots/0");
        in_netns(&c, &["curl", "-sf", "--cacert", ca.to_str().unwrap(), &url]).stdout
    };
    let fallback_root = dir.path().join("fallback-root.pem");
    std::fs::write(&fallback_root, roots(15100)).unwrap();
    let broker = "broker-test-2.litentry.org";
    assert_eq!(
        served_serial(&c, broker, &fallback_root),
        installed_serial(&c, broker),
        "served, from the fallback's chain"
    );
    assert!(
        std::fs::metadata(c.path("/var/lib/agentkeys-hostd/acme/account-fallback.json")).is_ok(),
        "its own account"
    );

    // The primary is back (a transient unit is gone once stopped: run it again under a new name);
    // renewals stay with the CA that issued.
    common::in_container::run_pebble(&c, "pebble-again", "pebble.json", &[]);
    std::thread::sleep(std::time::Duration::from_secs(32));
    let run = c.reconcile_acme(&[]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let cas = cas_of(&run);
    assert_eq!(cas.len(), 8, "every host renewed: {}", run.stdout);
    assert!(cas.values().all(|ca| ca == FALLBACK), "renewals stay with the fallback: {cas:?}");
    let status = c.exec(&["/usr/bin/agentkeys-hostd", "status", "--json"]);
    let st: serde_json::Value = serde_json::from_str(status.stdout.lines().next().unwrap()).unwrap();
    let named = st["renewals"].as_array().unwrap().iter().filter(|r| r["ca"] == FALLBACK).count();
    assert_eq!(named, 8, "status names the issuing CA: {}", status.stdout);

    // The fallback fails: the next renewals go to the primary.
    assert_eq!(c.exec(&["systemctl", "stop", "pebble-fallback"]).code, 0);
    std::thread::sleep(std::time::Duration::from_secs(32));
    let run = c.reconcile_acme(&[]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let cas = cas_of(&run);
    assert!(!cas.is_empty() && cas.values().all(|ca| ca == PRIMARY), "to the primary: {cas:?}");
    let primary_root = dir.path().join("primary-root.pem");
    std::fs::write(&primary_root, roots(15000)).unwrap();
    assert_eq!(
        served_serial(&c, broker, &primary_root),
        installed_serial(&c, broker),
        "served, from the primary's chain"
    );
}

/// The PEM certificates in `text`, in order.
fn pem_blocks(text: &str) -> Vec<String> {
    text.split("-----BEGIN CERTIFICATE-----")
        .skip(1)
        .map(|b| b.split("-----END CERTIFICATE-----").next().unwrap().split_whitespace().collect::<String>())
        .collect()
}

#[test]
fn a_chain_with_two_intermediates_is_served_exactly_as_the_ca_returned_it() {
    let c = Container::boot(&format!("{BASE_CONFIG}\n{ACME}"));
    let dir = tempfile::tempdir().unwrap();
    // A longer chain than Pebble's default: the leaf and three certificates above it.
    common::in_container::start_pebble_env(&c, dir.path(), 80, None, &["PEBBLE_CHAIN_LENGTH=3"]);
    let run = c.reconcile_acme(&["--ci", "--slot", "2", "--zone", "litentry.org", "--account-id", ACCOUNT]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let host = "signer-test-2.litentry.org";
    let installed = pem_blocks(
        &String::from_utf8(c.read(&format!("/var/lib/agentkeys-hostd/tls/{host}/current/fullchain.pem"))).unwrap(),
    );
    assert!(installed.len() >= 3, "the leaf and at least two intermediates as returned: {}", installed.len());
    let show = format!("echo | openssl s_client -connect 127.0.0.1:443 -servername {host} -showcerts 2>/dev/null");
    let served = pem_blocks(&String::from_utf8_lossy(&in_netns(&c, &["bash", "-c", &show]).stdout));
    assert_eq!(served, installed, "nginx serves the chain exactly as the CA returned it");
}
