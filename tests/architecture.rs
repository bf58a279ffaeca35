//! The shape of the code: the deciding modules import no effect module (they are pure functions of
//! their inputs, testable without a host). A deciding file that reaches for `crate::host`, the
//! engine, the run's effects or the command line fails here, naming the file and line.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

/// The deciding (pure) modules, as paths under agent/src (a directory means every file in it).
const DECIDING: [&str; 24] = [
    "acme_policy.rs",
    "catalog.rs",
    "chains.rs",
    "config",
    "contracts.rs",
    "daemon/options.rs",
    "daemon/record.rs",
    "daemon/schedule.rs",
    "doctor.rs",
    "envfile.rs",
    "error.rs",
    "identity.rs",
    "naming.rs",
    "observed.rs",
    "paths.rs",
    "plan.rs",
    "release.rs",
    "render",
    "secrets.rs",
    "settings.rs",
    "unitfile.rs",
    "validate.rs",
    "metrics.rs",
    "failpoints.rs",
];

/// The effect modules a deciding module must not use.
const EFFECTS: [&str; 11] = [
    "crate::host",
    "crate::engine",
    "crate::observe",
    "crate::apply",
    "crate::execute",
    "crate::cli",
    "crate::tls",
    "crate::state",
    "crate::report",
    "crate::daemon::mod",
    "crate::daemon::Daemon",
];

/// `crate::observe` must not match `crate::observed`: the token ends where an identifier does.
fn uses(line: &str, module: &str) -> bool {
    line.match_indices(module)
        .any(|(i, m)| line[i + m.len()..].chars().next().is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_')))
}

fn violations(src: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in DECIDING {
        let path = src.join(entry);
        let files: Vec<_> = if path.is_dir() {
            std::fs::read_dir(&path)
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|x| x == "rs"))
                .collect()
        } else {
            vec![path]
        };
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            for (n, line) in text.lines().enumerate() {
                if line.trim_start().starts_with("//") {
                    continue;
                }
                for module in EFFECTS.iter().filter(|m| uses(line, m)) {
                    out.push(format!("{}:{}: a deciding module uses {module}", file.display(), n + 1));
                }
            }
        }
    }
    out
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
    // A deciding file with an effect import, in a scratch tree, is caught with its line.
    let dir = tempfile::tempdir().unwrap();
    for entry in DECIDING {
        let p = dir.path().join(entry);
        if entry.ends_with(".rs") {
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, "//! pure\n").unwrap();
        } else {
            std::fs::create_dir_all(&p).unwrap();
        }
    }
    std::fs::write(dir.path().join("settings.rs"), "//! pure\nuse crate::host::releases::BIN_DIR;\n").unwrap();
    let found = violations(dir.path());
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].ends_with("settings.rs:2: a deciding module uses crate::host"), "{found:?}");
}
