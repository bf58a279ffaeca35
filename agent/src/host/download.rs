//! Downloading a release over HTTPS with hyper + rustls: bounded in size and time, checked
//! against the required SHA-256 before anything is unpacked. Nothing is written to disk.

use std::time::Duration;

use anyhow::Context;
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::decide::error::{InvalidInput, Source};
use crate::host::releases::{self, Loaded};

/// Largest archive accepted.
pub(crate) const MAX_BYTES: usize = 1 << 30;
/// The whole download must finish within this.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(300);

fn refuse(url: &str, reason: impl Into<String>) -> anyhow::Error {
    InvalidInput::new(Source::Flag(format!("--release {url}")), reason).into()
}

/// An HTTPS-only client trusting `ca_bundle` (PEM) or the system's roots.
pub(crate) fn https_client<B>(
    ca_bundle: Option<&std::path::Path>,
) -> anyhow::Result<Client<hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>, B>>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
{
    let builder = hyper_rustls::HttpsConnectorBuilder::new();
    let builder = match ca_bundle {
        Some(pem) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in
                CertificateDer::pem_file_iter(pem).with_context(|| format!("failed to read {}", pem.display()))?
            {
                roots.add(cert.with_context(|| format!("bad certificate in {}", pem.display()))?)?;
            }
            let cfg = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
                rustls::crypto::aws_lc_rs::default_provider(),
            ))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
            builder.with_tls_config(cfg)
        }
        None => builder.with_native_roots().context("failed to load the system's CA certificates")?,
    };
    let connector = builder.https_only().enable_http1().build();
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}

/// Fetch `url` (https only) trusting `ca_bundle` or the system's roots; at most `MAX_BYTES`.
pub async fn fetch(url: &str, ca_bundle: Option<&std::path::Path>) -> anyhow::Result<Vec<u8>> {
    let uri: hyper::Uri = url.parse().map_err(|e| refuse(url, format!("not a URL: {e}")))?;
    if uri.scheme_str() != Some("https") {
        return Err(refuse(url, "releases are downloaded over https only"));
    }
    let client = https_client::<http_body_util::Empty<bytes::Bytes>>(ca_bundle)?;
    let work = async {
        let resp = client.get(uri).await.map_err(|e| refuse(url, format!("download failed: {e}")))?;
        if !resp.status().is_success() {
            return Err(refuse(url, format!("the server answered {}", resp.status())));
        }
        let declared =
            resp.headers().get(hyper::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
        if declared.is_some_and(|n| n > MAX_BYTES) {
            return Err(refuse(url, format!("the archive is larger than {MAX_BYTES} bytes")));
        }
        let mut body = resp.into_body();
        let mut out = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| refuse(url, format!("download interrupted: {e}")))?;
            if let Some(data) = frame.data_ref() {
                if out.len() + data.len() > MAX_BYTES {
                    return Err(refuse(url, format!("the archive is larger than {MAX_BYTES} bytes")));
                }
                out.extend_from_slice(data);
            }
        }
        if declared.is_some_and(|n| n != out.len()) {
            return Err(refuse(
                url,
                format!("truncated download: {} of {} bytes", out.len(), declared.unwrap_or_default()),
            ));
        }
        Ok(out)
    };
    tokio::time::timeout(TIMEOUT, work)
        .await
        .map_err(|_| refuse(url, format!("the download took longer than {} s", TIMEOUT.as_secs())))?
}

/// Download, pin and load a release archive.
pub async fn release(
    url: &str,
    sha256: Option<&str>,
    ca_bundle: Option<&std::path::Path>,
    trust: &crate::decide::release::Trust,
    now: i64,
) -> anyhow::Result<Loaded> {
    let bytes = fetch(url, ca_bundle).await?;
    releases::load_archive(url, &bytes, sha256, trust, now)
}
