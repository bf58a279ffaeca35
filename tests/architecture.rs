//! The shape of the code: nothing under `agent/src/decide` imports the effects (`host`), the run,
//! the command line or the daemon, nor touches files, processes, the network, the clock or
//! randomness itself. A deciding file that does fails here, naming the file and line.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

/// The deciding code: every file under agent/src/decide.
const DECIDING: &str = "decide";

/// What a deciding file must not use: the other four parts of the crate, and the effects of the
/// standard library and the runtime crates (files, processes, the environment, the network, time,
/// randomness). Time and randomness come in as parameters.
const EFFECTS: [&str; 14] = [
    "crate::host",
    "crate::run",
    "crate::cli",
    "crate::daemon",
    "super::super::super",
    "std::fs",
    "std::process",
    "std::env",
    "std::net::Tcp",
    "SystemTime::now",
    "Instant::now",
    "tokio",
    "zbus",
    "getrandom",
];

/// `crate::observe` must not match `crate::observed`: the token ends where an identifier does.
fn uses(line: &str, module: &str) -> bool {
    line.match_indices(module)
        .any(|(i, m)| line[i + m.len()..].chars().next().is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_')))
}

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

fn violations(src: &Path) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(&src.join(DECIDING), &mut files);
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        for (n, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            for module in EFFECTS.iter().filter(|m| uses(line, m)) {
                out.push(format!("{}:{}: deciding code uses {module}", file.display(), n + 1));
            }
        }
    }
    out
}

/// The layers above `decide`, each allowed to use only the ones before it:
/// decide ← host ← run ← daemon ← cli. (Test modules, from `#[cfg(test)]` on, may use more.)
const LAYERS: [(&str, &[&str]); 3] = [
    ("host", &["crate::run", "crate::daemon", "crate::cli"]),
    ("run", &["crate::daemon", "crate::cli"]),
    ("daemon", &["crate::cli"]),
];

fn layer_violations(src: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for (layer, above) in LAYERS {
        let mut files = Vec::new();
        rust_files(&src.join(layer), &mut files);
        files.sort();
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            for (n, line) in text.lines().enumerate().take_while(|(_, l)| !l.starts_with("#[cfg(test)]")) {
                for module in above.iter().filter(|m| uses(line, m)) {
                    out.push(format!("{}:{}: {layer} uses {module}, a layer above it", file.display(), n + 1));
                }
            }
        }
    }
    out
}

#[test]
fn each_layer_uses_only_the_layers_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let found = layer_violations(&src);
    assert!(found.is_empty(), "{}", found.join("\n"));
    // A scratch tree where the executor reaches up into the command line is caught.
    let dir = tempfile::tempdir().unwrap();
    for layer in ["host", "run", "daemon"] {
        std::fs::create_dir_all(dir.path().join(layer)).unwrap();
    }
    let text = "//! effects\nuse crate::cli::exec_pubkey::parse;\n#[cfg(test)]\nuse crate::run::testhost;\n";
    std::fs::write(dir.path().join("host/execute.rs"), text).unwrap();
    let found = layer_violations(dir.path());
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].ends_with("host/execute.rs:2: host uses crate::cli, a layer above it"), "{found:?}");
}

#[test]
fn deciding_modules_import_no_effect_module() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let found = violations(&src);
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn the_check_can_fail() {
    assert!(uses("use crate::host::fs::Root;", "crate::host"));
    assert!(uses("crate::observe::tls_states(root)", "crate::observe"));
    assert!(!uses("use crate::observed::Entry;", "crate::observe"), "observed is pure");
    assert!(uses("let t = std::fs::read(p);", "std::fs"));
    // A deciding file with an effect import, in a scratch tree, is caught with its line.
    let dir = tempfile::tempdir().unwrap();
    let decide = dir.path().join("decide/render");
    std::fs::create_dir_all(&decide).unwrap();
    std::fs::write(decide.join("mod.rs"), "//! pure\nuse crate::decide::plan::Plan;\n").unwrap();
    std::fs::write(dir.path().join("decide/settings.rs"), "//! pure\nuse crate::host::releases::BIN_DIR;\n").unwrap();
    std::fs::write(decide.join("nginx.rs"), "//! pure\n\nfn now() { let _ = std::time::SystemTime::now(); }\n")
        .unwrap();
    let found = violations(dir.path());
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found[0].ends_with("decide/render/nginx.rs:3: deciding code uses SystemTime::now"), "{found:?}");
    assert!(found[1].ends_with("decide/settings.rs:2: deciding code uses crate::host"), "{found:?}");
}
