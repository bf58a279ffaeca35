//! Reading certificates on disk: validity and serial of a chain's leaf.

use anyhow::Context;

/// The leaf of a PEM chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub not_before: i64,
    pub not_after: i64,
    pub serial: String,
    pub leaf_der: Vec<u8>,
}

pub fn leaf_of_pem(text: &str) -> anyhow::Result<CertInfo> {
    let (_, pem) =
        x509_parser::pem::parse_x509_pem(text.as_bytes()).map_err(|e| anyhow::anyhow!("not a PEM certificate: {e}"))?;
    let cert = pem.parse_x509().map_err(|e| anyhow::anyhow!("not an X.509 certificate: {e}"))?;
    Ok(CertInfo {
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        serial: cert.tbs_certificate.raw_serial_as_string(),
        leaf_der: pem.contents.clone(),
    })
}

pub(crate) fn read_leaf(path: &std::path::Path) -> anyhow::Result<CertInfo> {
    let text = std::fs::read_to_string(path).with_context(|| format!("failed to read {}", path.display()))?;
    leaf_of_pem(&text).with_context(|| format!("{} is not a usable certificate", path.display()))
}
