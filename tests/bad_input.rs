//! The bad-input corpus (tests/bad-input/*.toml, one case per file): every case exits with its
//! expected code, names the offending flag, key or file:line, and writes nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::{assert_same, snapshot};

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    args: Vec<String>,
    code: i32,
    expect: Vec<String>,
    /// The whole hostd.toml (default: the common base configuration).
    config: Option<String>,
    /// Appended to the configuration.
    config_extra: Option<String>,
    /// `rpc-only`: start from a configuration with only the RPC set.
    config_base: Option<String>,
    /// An operator env file passed with --env-file.
    env: Option<String>,
    /// A deployed broker unit already on the host (odd issuers).
    broker_unit: Option<String>,
    /// A release manifest, passed with `--release` (a bundle directory outside the root).
    manifest: Option<String>,
    /// Binaries the release in service ships (optional services), by name.
    ships: Option<Vec<String>>,
    /// Operator input files: path → content, written with `input_mode` (default 0600).
    inputs: Option<std::collections::BTreeMap<String, String>>,
    input_mode: Option<u32>,
    /// Fragments that must not appear in any output (an input's value).
    absent: Option<Vec<String>>,
}

#[test]
fn every_bad_input_is_refused_with_a_precise_message_and_nothing_written() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/bad-input");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    names.sort();
    assert!(names.len() >= 60, "the corpus has {} cases", names.len());
    for path in names {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let case: Case =
            toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut config = case.config.clone().unwrap_or_else(|| match case.config_base.as_deref() {
            Some("rpc-only") => "[chain]\nrpc_http = \"https://rpc.example.org\"\n".into(),
            _ => common::BASE_CONFIG.into(),
        });
        config.push_str(case.config_extra.as_deref().unwrap_or_default());
        let root = common::fake_root(&config);
        let r = root.path();
        let mut args: Vec<String> = case.args.clone();
        if let Some(env) = &case.env {
            let file = r.join("operator.env");
            std::fs::write(&file, env).unwrap();
            args.extend(["--env-file".into(), file.to_string_lossy().into_owned()]);
        }
        if let Some(unit) = &case.broker_unit {
            std::fs::create_dir_all(r.join("etc/systemd/system")).unwrap();
            std::fs::write(r.join("etc/systemd/system/agentkeys-broker.service"), unit).unwrap();
        }
        for name in case.ships.iter().flatten() {
            let bin = r.join("opt/agentkeys/current/bin");
            std::fs::create_dir_all(&bin).unwrap();
            std::fs::write(bin.join(name), "stand-in binary\n").unwrap();
        }
        for (path, content) in case.inputs.iter().flatten() {
            use std::os::unix::fs::PermissionsExt;
            let p = r.join(path.trim_start_matches('/'));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, content).unwrap();
            let mode = case.input_mode.unwrap_or(0o600);
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        let bundle = tempfile::tempdir().unwrap();
        if let Some(manifest) = &case.manifest {
            std::fs::create_dir_all(bundle.path().join("bin")).unwrap();
            std::fs::write(bundle.path().join("agentkeys-release.toml"), manifest).unwrap();
            args.extend(["--release".into(), bundle.path().to_string_lossy().into_owned()]);
        }
        let before = snapshot(r);
        for mode in [&["--dry-run"][..], &[][..]] {
            let mut all: Vec<&str> = args.iter().map(String::as_str).collect();
            all.extend_from_slice(mode);
            let run = common::reconcile(r, &all);
            assert_eq!(run.code, case.code, "{name} {mode:?}: {}{}", run.stdout, run.stderr);
            for fragment in &case.expect {
                assert!(run.stderr.contains(fragment.as_str()), "{name}: stderr lacks {fragment:?}: {}", run.stderr);
            }
            assert!(run.stdout.is_empty(), "{name}: {}", run.stdout);
            for secret in case.absent.iter().flatten() {
                assert!(!run.stderr.contains(secret.as_str()), "{name}: the input's value is in the error");
            }
            assert_same(&before, &snapshot(r), &name);
        }
    }
}
