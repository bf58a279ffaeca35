//! The SSM Command document: schema 2.2, `aws:runShellScript`, parameters constrained so nothing
//! substituted into the script can be shell, and the script builds exactly the intended command.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Command;

fn document() -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/ssm/agentkeys-hostd-reconcile.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Does parameter `param` of `doc` accept `value` (its `allowedPattern`, matched as SSM does)?
fn accepts(doc: &serde_json::Value, param: &str, value: &str) -> bool {
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
    common::write_executable(&stub, b"#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done\n");
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
    let accepts = |param: &str, value: &str| accepts(&doc, param, value);
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

/// The install document, with SSM's substitution, against stub `curl`/`dpkg`/`agentkeys-hostd`
/// (real `sha256sum` and `minisign`): (exit code, stderr, what dpkg was asked to install).
fn install(
    url: &str,
    sha: &str,
    deb: &Path,
    signature: Option<&Path>,
    pinned: &[String],
) -> (i32, String, Option<String>) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/ssm/agentkeys-hostd-install.json");
    let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let lines: Vec<&str> =
        doc["mainSteps"][0]["inputs"]["runCommand"].as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect();
    let script = lines.join("\n").replace("{{ debUrl }}", url).replace("{{ debSha256 }}", sha);
    let stubs = tempfile::tempdir().unwrap();
    let write = |name: &str, body: String| {
        let p = stubs.path().join(name);
        common::write_executable(&p, body.as_bytes());
    };
    // curl: serve the package for the URL and its signature for URL.minisig (or fail).
    let sig = signature.map_or_else(|| "exit 22".to_owned(), |s| format!("cp '{}' \"$out\"", s.display()));
    write(
        "curl",
        format!(
            "#!/bin/sh\nwhile [ $# -gt 1 ]; do case \"$1\" in -o) out=$2; shift 2;; *) shift;; esac; done\ncase \"$1\" in *.minisig) {sig};; *) cp '{}' \"$out\";; esac\n",
            deb.display()
        ),
    );
    let log = stubs.path().join("dpkg.log");
    write("dpkg", format!("#!/bin/sh\necho \"$@\" > '{}'\n", log.display()));
    if !pinned.is_empty() {
        write(
            "agentkeys-hostd",
            format!(
                "#!/bin/sh\nprintf '%s\\n' {}\n",
                pinned.iter().map(|k| format!("'{k}'")).collect::<Vec<_>>().join(" ")
            ),
        );
    }
    let out = Command::new("sh")
        .arg("-c")
        .arg(&script)
        .env_clear()
        .env("PATH", format!("{}:/usr/bin:/bin", stubs.path().display()))
        .output()
        .unwrap();
    let dpkg = std::fs::read_to_string(&log).ok();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned(), dpkg)
}

#[test]
fn the_install_document_checks_the_hash_and_the_pinned_signature() {
    let dir = tempfile::tempdir().unwrap();
    let deb = dir.path().join("agentkeys-hostd_0.2.0-1_amd64.deb");
    std::fs::write(&deb, b"not really a deb, but bytes to hash and sign").unwrap();
    let sha = String::from_utf8(Command::new("sha256sum").arg(&deb).output().unwrap().stdout).unwrap()[..64].to_owned();
    let keygen = |name: &str| {
        let (p, s) = (dir.path().join(format!("{name}.pub")), dir.path().join(format!("{name}.key")));
        assert!(
            Command::new("minisign")
                .args(["-G", "-W", "-f", "-p"])
                .arg(&p)
                .arg("-s")
                .arg(&s)
                .status()
                .unwrap()
                .success()
        );
        (std::fs::read_to_string(&p).unwrap().lines().last().unwrap().trim().to_owned(), s)
    };
    let (release, key) = keygen("release");
    let (other, _) = keygen("other");
    let sig = dir.path().join("pkg.minisig");
    assert!(
        Command::new("minisign")
            .args(["-S", "-s"])
            .arg(&key)
            .arg("-m")
            .arg(&deb)
            .arg("-x")
            .arg(&sig)
            .status()
            .unwrap()
            .success()
    );
    let url = "https://releases.example.org/agentkeys-hostd_0.2.0-1_amd64.deb";

    let (code, err, dpkg) = install(url, &sha, &deb, None, &[]);
    assert_eq!(code, 0, "first install, no keys pinned yet: the hash pin alone: {err}");
    assert!(dpkg.is_some_and(|d| d.starts_with("-i ")), "dpkg -i ran");
    let (code, _, dpkg) = install(url, &sha, &deb, Some(&sig), std::slice::from_ref(&release));
    assert_eq!((code, dpkg.is_some()), (0, true), "signed by the pinned key");
    let (code, _, dpkg) = install(url, &sha, &deb, Some(&sig), &[other.clone(), release.clone()]);
    assert_eq!((code, dpkg.is_some()), (0, true), "one of several pinned keys");
    for (what, sha_used, signature, keys, says) in [
        ("wrong hash", "0".repeat(64), Some(sig.as_path()), vec![release.clone()], "SHA-256"),
        ("unsigned", sha.clone(), None, vec![release.clone()], "no signature"),
        ("another key", sha.clone(), Some(sig.as_path()), vec![other.clone()], "not signed by a release key"),
    ] {
        let (code, err, dpkg) = install(url, &sha_used, &deb, signature, &keys);
        assert_eq!(code, 2, "{what}: {err}");
        assert!(err.contains(says), "{what}: {err}");
        assert!(dpkg.is_none(), "{what}: nothing installed");
    }
    // The parameters' patterns refuse what could become shell.
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/ssm/agentkeys-hostd-install.json");
    let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let accepts = |param: &str, value: &str| accepts(&doc, param, value);
    assert!(accepts("debUrl", url));
    for bad in [
        "",
        "http://x.org/a.deb",
        "https://x.org/a.deb';reboot;'",
        "https://x.org/$(id).deb",
        "https://x.org/a.tar.zst",
        "https://x.org/a b.deb",
    ] {
        assert!(!accepts("debUrl", bad), "{bad:?} must be refused");
    }
    assert!(
        accepts("debSha256", &sha) && !accepts("debSha256", "") && !accepts("debSha256", &format!("{}'", &sha[..63]))
    );
}
