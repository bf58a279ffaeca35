//! Proof that nginx serves what was installed (spec §6): a TLS handshake to 127.0.0.1:443 with the
//! host's SNI, comparing the served leaf with the installed one byte for byte. The handshake checks
//! the server's signature (it holds the key); trust is not the question here, identity is.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

#[derive(Debug)]
struct SameBytesLater(Arc<CryptoProvider>);

impl ServerCertVerifier for SameBytesLater {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A TLS session to 127.0.0.1:`port` with SNI `host`.
fn connect(port: u16, host: &str) -> anyhow::Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS setup")?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(SameBytesLater(provider)))
        .with_no_client_auth();
    let name = ServerName::try_from(host.to_owned()).with_context(|| format!("{host} is not a TLS server name"))?;
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name)?;
    let mut sock = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2))
        .with_context(|| format!("nothing answers on 127.0.0.1:{port}"))?;
    sock.set_read_timeout(Some(Duration::from_secs(3)))?;
    sock.set_write_timeout(Some(Duration::from_secs(3)))?;
    while conn.is_handshaking() {
        conn.complete_io(&mut sock).with_context(|| format!("TLS handshake with SNI {host} failed"))?;
    }
    Ok(rustls::StreamOwned::new(conn, sock))
}

/// The certificate chain nginx serves on 127.0.0.1:`port` for `host`, leaf first (DER).
pub(crate) fn served_chain(port: u16, host: &str) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut s = connect(port, host)?;
    let chain: Vec<Vec<u8>> =
        s.conn.peer_certificates().context("no certificate served")?.iter().map(|c| c.to_vec()).collect();
    s.conn.send_close_notify();
    let _ = s.conn.complete_io(&mut s.sock);
    Ok(chain)
}

/// The leaf certificate nginx serves on 127.0.0.1:`port` for `host`.
pub(crate) fn served_leaf(port: u16, host: &str) -> anyhow::Result<Vec<u8>> {
    served_chain(port, host)?.into_iter().next().context("no certificate served")
}

/// `GET https://host/path` through 127.0.0.1:`port` (the local nginx), bounded; returns the body
/// of a 200 answer.
pub fn get(port: u16, host: &str, path: &str) -> anyhow::Result<String> {
    let mut s = connect(port, host)?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: application/json\r\nConnection: close\r\n\r\n")?;
    let mut raw = Vec::new();
    let _ = (&mut s).take(1 << 20).read_to_end(&mut raw); // a close without notify still ends the body
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").context("malformed HTTP answer")?;
    let status = head.split_whitespace().nth(1).unwrap_or_default();
    anyhow::ensure!(status == "200", "https://{host}{path} answered HTTP {status}");
    Ok(body.to_owned())
}

/// Retry the handshake until the served leaf equals `expected` (nginx may still be switching
/// workers after a reload), or fail after `budget` naming the host.
pub fn prove(port: u16, host: &str, expected: &[u8], budget: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + budget;
    loop {
        let last = match served_leaf(port, host) {
            Ok(leaf) if leaf == expected => return Ok(()),
            Ok(_) => "a different certificate".to_owned(),
            Err(e) => format!("{e:#}"),
        };
        if Instant::now() >= deadline {
            bail!(
                "after the reload nginx serves {last} for {host} on 127.0.0.1:{port}, not the one just installed; check its vhost and `nginx -T`"
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Send one of `doctor`'s hand-built ClientHellos to 127.0.0.1:`port` and read the first answer
/// (a ServerHello's first bytes or an alert), bounded to 3 s.
pub(crate) fn probe(port: u16, host: &str, hello: &crate::decide::tls_probe::Hello) -> anyhow::Result<Vec<u8>> {
    let mut random = [0u8; 32];
    getrandom::fill(&mut random).map_err(|e| anyhow::anyhow!("failed to read the OS random number generator: {e}"))?;
    let mut sock = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2))
        .with_context(|| format!("nothing answers on 127.0.0.1:{port}"))?;
    sock.set_read_timeout(Some(Duration::from_secs(3)))?;
    sock.set_write_timeout(Some(Duration::from_secs(3)))?;
    sock.write_all(&crate::decide::tls_probe::client_hello(hello, host, random))?;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    // A ServerHello's version, suite and extensions fit in its first record; stop once it is in.
    while got.len() < 5 || got.len() < 5 + usize::from(u16::from_be_bytes([got[3], got[4]])) {
        match sock.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if got.is_empty() && e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => return Err(e).with_context(|| format!("reading the answer of 127.0.0.1:{port} for {host}")),
        }
        if got.len() > 1 << 16 {
            break;
        }
    }
    Ok(got)
}
