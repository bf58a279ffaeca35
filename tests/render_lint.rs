//! Every rendered unit passes `systemd-analyze verify` and every rendered vhost passes real
//! `nginx -t` (warnings are failures), for all four stacks in both TLS states and both TLS profiles.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Command;

/// Lint one unit inside `root`; any stderr output (e.g. `Unknown key`) is a failure.
fn verify_unit(root: &Path, unit: &str) -> Result<(), String> {
    let out = Command::new("systemd-analyze")
        .args(["verify", "--recursive-errors=no", "--man=no"])
        .arg(format!("--root={}", root.display()))
        .arg(root.join("etc/systemd/system").join(unit))
        .output()
        .expect("systemd-analyze is installed (the README's test command installs it)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() && stderr.trim().is_empty() { Ok(()) } else { Err(format!("{unit}: {stderr}")) }
}

/// `nginx -t` on the vhosts of `root`, with their absolute paths mapped into the root.
fn nginx_test(root: &Path, vhosts: &[String]) -> Result<(), String> {
    let prefix = tempfile::tempdir().unwrap();
    let p = prefix.path();
    let r = root.display().to_string();
    let mut includes = String::new();
    for (i, text) in vhosts.iter().enumerate() {
        let mapped = text
            .replace("/etc/nginx/", &format!("{r}/etc/nginx/"))
            .replace("/var/lib/agentkeys-hostd/", &format!("{r}/var/lib/agentkeys-hostd/"))
            .replace("/etc/letsencrypt/", &format!("{r}/etc/letsencrypt/"));
        std::fs::write(p.join(format!("vhost{i}.conf")), mapped).unwrap();
        includes.push_str(&format!("    include {}/vhost{i}.conf;\n", p.display()));
    }
    let d = p.display();
    let conf = format!(
        "pid {d}/nginx.pid;\nerror_log stderr;\nevents {{}}\nhttp {{\n    access_log off;\n    client_body_temp_path {d}/b;\n    proxy_temp_path {d}/p;\n    fastcgi_temp_path {d}/f;\n    uwsgi_temp_path {d}/u;\n    scgi_temp_path {d}/s;\n{includes}}}\n"
    );
    std::fs::write(p.join("nginx.conf"), conf).unwrap();
    let out = Command::new("nginx")
        .args(["-t", "-q", "-c"])
        .arg(p.join("nginx.conf"))
        .arg("-p")
        .arg(p)
        .output()
        .expect("nginx is installed (the README's test command installs nginx-light)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() && !stderr.contains("[warn]") && !stderr.contains("[emerg]") {
        Ok(())
    } else {
        Err(stderr.into_owned())
    }
}

/// A self-signed P-256 certificate for nginx to load (names are not checked by `nginx -t`).
fn make_cert(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let args = ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=lint"];
    common::pebble::openssl(
        &[&args[..], &["-days", "2", "-keyout", "privkey.pem", "-out", "fullchain.pem"]].concat(),
        dir,
    );
}

fn files_in(dir: &Path, ext: &str) -> Vec<(String, String)> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read_to_string(&p).unwrap()))
        .collect();
    out.sort();
    out
}

#[test]
fn all_stacks_both_tls_states_pass_the_real_linters() {
    let mut units_checked = 0;
    let mut vhosts_checked = 0;
    for (name, selectors) in common::stacks() {
        for (https, profile) in [(false, "intermediate"), (true, "intermediate"), (true, "modern")] {
            let config = format!("{}\n[nginx]\ntls_profile = \"{profile}\"\n", common::BASE_CONFIG);
            let root = common::fake_root(&config);
            let r = root.path();
            common::stub_binaries(r);
            common::write_inputs(r);
            let mut args = selectors.clone();
            args.extend(["--account-id", common::ACCOUNT, "--json"]);
            if https {
                // The hosts' names, from the identity command, so the certificates sit where hostd looks.
                let mut id_args = vec!["identity", "--root", r.to_str().unwrap()];
                id_args.extend(&args);
                let names = common::run_in(r, &id_args).json();
                let hosts = names["hosts"].as_object().unwrap();
                for (i, (stem, host)) in hosts.iter().enumerate() {
                    let host = host.as_str().unwrap();
                    // Half from hostd's own store, half adopted from the old tooling's layout.
                    let dir = if i % 2 == 0 {
                        format!("var/lib/agentkeys-hostd/tls/{host}/current")
                    } else {
                        format!("etc/letsencrypt/live/{host}")
                    };
                    make_cert(&r.join(dir));
                    let _ = stem;
                }
            }
            let run = common::reconcile(r, &args);
            assert_eq!(run.code, 0, "{name}: {}", run.stderr);
            let states = run.json()["tls"]
                .as_object()
                .unwrap()
                .values()
                .map(|v| v.as_str().unwrap().to_owned())
                .collect::<Vec<_>>();
            let want = if https { "https" } else { "http-placeholder" };
            // Every vhost, the optional services' included (their binaries are among the stubs, and
            // their inputs are in place).
            let hosts = hostd::decide::catalog::SERVICES.iter().filter(|s| s.vhost.is_some()).count();
            assert!(states.len() == hosts && states.iter().all(|s| s == want), "{name}: {states:?}");
            for (unit, _) in files_in(&r.join("etc/systemd/system"), "service") {
                verify_unit(r, &unit).unwrap_or_else(|e| panic!("{name} https={https}: {e}"));
                units_checked += 1;
            }
            let vhosts: Vec<String> =
                files_in(&r.join("etc/nginx/sites-available"), "conf").into_iter().map(|(_, t)| t).collect();
            assert_eq!(vhosts.len(), hosts);
            vhosts_checked += vhosts.len();
            // The shared TLS settings sit at the http level, as conf.d/ is included on every layout.
            let shared: Vec<String> =
                files_in(&r.join("etc/nginx/conf.d"), "conf").into_iter().map(|(_, t)| t).collect();
            assert_eq!(shared.len(), 1, "{name}: conf.d holds the shared TLS file only");
            nginx_test(r, &[shared, vhosts].concat())
                .unwrap_or_else(|e| panic!("{name} https={https} {profile}: nginx -t: {e}"));
        }
    }
    assert_eq!(
        (units_checked, vhosts_checked),
        (168, 132),
        "4 stacks × (placeholder, https intermediate, https modern) × (14 units, 11 vhosts)"
    );
}

#[test]
fn the_linters_catch_what_they_are_for() {
    let root = common::fake_root(common::BASE_CONFIG);
    let r = root.path();
    common::stub_binaries(r);
    assert_eq!(common::reconcile(r, &["--zone", "litentry.org", "--account-id", common::ACCOUNT]).code, 0);
    let unit = r.join("etc/systemd/system/agentkeys-worker-email.service");
    let text = std::fs::read_to_string(&unit).unwrap();
    std::fs::write(&unit, text.replace("[Service]\n", "[Service]\nProtectKernelTunable=yes\n")).unwrap();
    let err = verify_unit(r, "agentkeys-worker-email.service").expect_err("unknown key must fail");
    assert!(err.contains("Unknown key"), "{err}");
    std::fs::remove_file(r.join("opt/agentkeys/current/bin/agentkeys-bundler")).unwrap();
    assert!(verify_unit(r, "agentkeys-bundler.service").is_err(), "a missing binary must fail");
    let vhost = std::fs::read_to_string(r.join("etc/nginx/sites-available/broker.litentry.org.conf")).unwrap();
    let err =
        nginx_test(r, &[vhost.clone(), vhost]).expect_err("a duplicate server_name is only a [warn] and must fail");
    assert!(err.contains("[warn]"), "{err}");
}
