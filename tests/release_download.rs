//! Release downloads over HTTPS from a loopback server with a test CA: pinned by SHA-256, a
//! truncated transfer and an untrusted server refused with nothing changed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Serve `body` once per connection over TLS, announcing `declared` bytes (more than sent = truncated).
fn serve(dir: &std::path::Path, body: Vec<u8>, declared: usize) -> String {
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(dir.join("cert.pem")).unwrap().map(Result::unwrap).collect();
    let key = PrivateKeyDer::from_pem_file(dir.join("key.pem")).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let cfg = Arc::new(cfg);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for sock in listener.incoming().flatten() {
            let conn = rustls::ServerConnection::new(cfg.clone()).unwrap();
            let mut tls = rustls::StreamOwned::new(conn, sock);
            let mut buf = [0u8; 4096];
            let _ = tls.read(&mut buf);
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {declared}\r\nConnection: close\r\n\r\n");
            let _ = tls.write_all(head.as_bytes()).and_then(|()| tls.write_all(&body));
            let _ = tls.flush();
            tls.conn.send_close_notify();
            let _ = tls.flush();
        }
    });
    format!("https://127.0.0.1:{port}/agentkeys-1.1.0.tar.gz")
}

fn tarball(bundle_dir: &std::path::Path) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut t = tar::Builder::new(gz);
    t.append_dir_all(".", bundle_dir).unwrap();
    t.into_inner().unwrap().finish().unwrap()
}

fn sha(b: &[u8]) -> String {
    hostd::host::releases::sha256_hex(b)
}

#[test]
fn downloads_are_pinned_bounded_and_trusted_only_as_configured() {
    let pki = tempfile::tempdir().unwrap();
    common::pebble::api_certs(pki.path());
    let work = tempfile::tempdir().unwrap();
    common::bundle::write(&work.path().join("b"), "1.1.0", "bbbbbbbbbbbbbbbb", &[]);
    let archive = tarball(&work.path().join("b"));
    let root = common::fake_root(common::BASE_CONFIG);
    let r = root.path();
    let ca = pki.path().join("ca.pem");
    let declare = ["--ci", "--slot", "2", "--zone", "litentry.org", "--account-id", common::ACCOUNT];

    // Truncated: the server announces the full length but sends half.
    let url = serve(pki.path(), archive[..archive.len() / 2].to_vec(), archive.len());
    let before = common::snapshot(r);
    let mut args = declare.to_vec();
    let digest = sha(&archive);
    args.extend(["--release", &url, "--sha256", &digest, "--release-ca", ca.to_str().unwrap()]);
    let run = common::reconcile(r, &args);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("truncated") || run.stderr.contains("interrupted"), "{}", run.stderr);
    common::assert_same(&before, &common::snapshot(r), "truncated download");

    // The real thing, but without trusting the test CA: refused.
    let url = serve(pki.path(), archive.clone(), archive.len());
    let mut args = declare.to_vec();
    args.extend(["--release", &url, "--sha256", &digest]);
    let run = common::reconcile(r, &args);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("download failed"), "{}", run.stderr);
    common::assert_same(&before, &common::snapshot(r), "untrusted server");

    // Trusted and pinned: installed and switched to.
    let mut args = declare.to_vec();
    args.extend(["--release", &url, "--sha256", &digest, "--release-ca", ca.to_str().unwrap(), "--json"]);
    let run = common::reconcile(r, &args);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.json()["release"], "1.1.0-bbbbbbbbbbbb");
    assert_eq!(
        std::fs::read_link(r.join("opt/agentkeys/current")).unwrap().to_str(),
        Some("releases/1.1.0-bbbbbbbbbbbb")
    );
    let broker =
        std::fs::read(r.join("opt/agentkeys/releases/1.1.0-bbbbbbbbbbbb/bin/agentkeys-broker-server")).unwrap();
    assert_eq!(broker, std::fs::read(work.path().join("b/bin/agentkeys-broker-server")).unwrap());

    // A URL without --sha256 on a host that pins no release key: refused before any download.
    let mut args = declare.to_vec();
    args.extend(["--release", &url, "--release-ca", ca.to_str().unwrap()]);
    let unpinned = common::reconcile(r, &args);
    assert_eq!(unpinned.code, 2, "{}", unpinned.stderr);
    assert!(unpinned.stderr.contains("--sha256"), "{}", unpinned.stderr);

    // With a release key pinned, a signed archive needs no --sha256 (the signature pins it), and
    // an unsigned one is refused.
    let keys = work.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let (public, secret) = (keys.join("r.pub"), keys.join("r.key"));
    let keygen =
        Command::new("minisign").args(["-G", "-W", "-f", "-p"]).arg(&public).arg("-s").arg(&secret).output().unwrap();
    assert!(keygen.status.success(), "{}", String::from_utf8_lossy(&keygen.stderr));
    let key_line = std::fs::read_to_string(&public).unwrap().lines().last().unwrap().trim().to_owned();
    let config = r.join("etc/agentkeys/hostd.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("{text}\n[release]\nkeys = [\"{key_line}\"]\n")).unwrap();
    let c_dir = work.path().join("c");
    common::bundle::write(&c_dir, "1.2.0", "cccccccccccccccc", &[]);
    let manifest = c_dir.join("agentkeys-release.toml");
    let expires = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 3_600;
    let dated = std::fs::read_to_string(&manifest).unwrap().replacen(
        "[binaries]\n",
        &format!("expires_unix = {expires}\n[binaries]\n"),
        1,
    );
    std::fs::write(&manifest, dated).unwrap();
    let unsigned = tarball(&c_dir);
    let url = serve(pki.path(), unsigned.clone(), unsigned.len());
    let mut args = declare.to_vec();
    args.extend(["--release", &url, "--release-ca", ca.to_str().unwrap()]);
    let run = common::reconcile(r, &args);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("not signed"), "{}", run.stderr);
    let sign = Command::new("minisign").args(["-S", "-s"]).arg(&secret).arg("-m").arg(&manifest).output().unwrap();
    assert!(sign.status.success(), "{}", String::from_utf8_lossy(&sign.stderr));
    let signed = tarball(&c_dir);
    let url = serve(pki.path(), signed.clone(), signed.len());
    let mut args = declare.to_vec();
    args.extend(["--release", &url, "--release-ca", ca.to_str().unwrap(), "--json"]);
    let run = common::reconcile(r, &args);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.json()["release"], "1.2.0-cccccccccccc");
}
