//! The SSM Command document: schema 2.2, `aws:runShellScript`, parameters constrained so nothing
//! substituted into the script can be shell, and the script builds exactly the intended command.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

fn document() -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/ssm/agentkeys-hostd-reconcile.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Substitute `{{ name }}` the way SSM does, point the script at a stub that prints its argv.
fn run(params: &[(&str, &str)]) -> Vec<String> {
    let doc = document();
    let lines: Vec<String> = doc["mainSteps"][0]["inputs"]["runCommand"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_owned())
        .collect();
    let mut script = lines.join("\n");
    for (name, default) in [("releaseUrl", ""), ("releaseSha256", ""), ("acme", "on")] {
        let v = params.iter().find(|(n, _)| *n == name).map_or(default, |(_, v)| v);
        script = script.replace(&format!("{{{{ {name} }}}}"), v);
    }
    let dir = tempfile::tempdir().unwrap();
    let stub = dir.path().join("hostd");
    std::fs::write(&stub, "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done\n").unwrap();
    std::fs::set_permissions(&stub, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let script = script.replace("/usr/bin/agentkeys-hostd", stub.to_str().unwrap());
    let out = Command::new("sh").arg("-c").arg(&script).env_clear().output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(str::to_owned).collect()
}

#[test]
fn the_document_runs_exactly_the_intended_command() {
    let doc = document();
    assert_eq!(doc["schemaVersion"], "2.2");
    assert_eq!(doc["mainSteps"][0]["action"], "aws:runShellScript");
    let accepts = |param: &str, value: &str| {
        let pattern = doc["parameters"][param]["allowedPattern"].as_str().unwrap();
        Command::new("sh")
            .arg("-c")
            .arg("printf '%s\\n' \"$1\" | grep -Eqx -- \"$2\"")
            .arg("sh")
            .arg(value)
            .arg(pattern)
            .status()
            .unwrap()
            .success()
    };
    for good in ["", "https://releases.example.org/agentkeys-1.4.2.tar.zst", "https://10.0.0.5:8443/r/a%20b.tar.gz"] {
        assert!(accepts("releaseUrl", good), "{good:?}");
    }
    for bad in [
        "http://releases.example.org/a.tar.zst",
        "https://x.org/a';reboot;'",
        "https://x.org/$(id)",
        "https://x.org/a b",
        "https://x.org/`id`",
        "https://x.org/a|b",
        "https://x.org/a\"b",
        "https://user@x.org/a",
    ] {
        assert!(!accepts("releaseUrl", bad), "{bad:?} must be refused");
    }
    assert!(accepts("releaseSha256", &"0".repeat(64)) && !accepts("releaseSha256", &format!("{}'", "0".repeat(63))));
    assert_eq!(run(&[]), ["reconcile", "--json"]);
    let sha = "a".repeat(64);
    assert_eq!(
        run(&[
            ("releaseUrl", "https://releases.example.org/agentkeys-1.4.2.tar.zst"),
            ("releaseSha256", &sha),
            ("acme", "off")
        ]),
        [
            "reconcile",
            "--json",
            "--release",
            "https://releases.example.org/agentkeys-1.4.2.tar.zst",
            "--sha256",
            &sha,
            "--no-acme"
        ]
    );
}
