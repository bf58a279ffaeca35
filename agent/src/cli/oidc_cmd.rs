//! `agentkeys-hostd oidc`: once the broker certificate is live, verify the issuer's discovery
//! document and JWKS through the local nginx, and print the exact IAM command that registers the
//! issuer, with the SHA-1 thumbprint of the served chain's top intermediate computed here.

use clap::Args;
use serde::Serialize;
use sha1::Digest as _;

use super::emit;
use crate::host::{fs::Root, tls_proof};
use crate::{decide::identity, host::observe};

#[derive(Debug, Args)]
pub struct OidcArgs {
    /// Filesystem root to read the deployed identity from.
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: std::path::PathBuf,
    /// Print JSON (one line).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct Report {
    issuer: String,
    thumbprint: String,
    discovery_issuer_matches: bool,
    es256_keys: usize,
    command: String,
}

/// The top certificate of the served chain (the issuing intermediate AWS pins), SHA-1, hex.
pub fn thumbprint(chain: &[Vec<u8>]) -> Option<String> {
    let top = if chain.len() > 1 { chain.last() } else { chain.first() }?;
    Some(sha1::Sha1::digest(top).iter().map(|b| format!("{b:02x}")).collect())
}

/// Count JWKS keys usable for ES256.
pub(crate) fn es256_keys(jwks: &serde_json::Value) -> usize {
    jwks["keys"]
        .as_array()
        .map_or(0, |k| k.iter().filter(|k| k["alg"] == "ES256" || (k["kty"] == "EC" && k["crv"] == "P-256")).count())
}

pub fn run(args: &OidcArgs) -> anyhow::Result<i32> {
    let root = Root::new(&args.root);
    let deployed = identity::deployed(&observe::host_records(&root)?)?
        .ok_or_else(|| anyhow::anyhow!("no deployed identity: run reconcile first"))?;
    let issuer = deployed.identity.issuer();
    let host = deployed.identity.broker_host();
    let chain = tls_proof::served_chain(443, &host)?;
    let thumbprint = thumbprint(&chain).ok_or_else(|| anyhow::anyhow!("nginx served no certificate for {host}"))?;
    let discovery: serde_json::Value =
        serde_json::from_str(&tls_proof::get(443, &host, "/.well-known/openid-configuration")?)?;
    let matches = discovery["issuer"].as_str() == Some(issuer.as_str());
    let jwks_path = discovery["jwks_uri"]
        .as_str()
        .and_then(|u| u.strip_prefix(&issuer))
        .unwrap_or("/.well-known/jwks.json")
        .to_owned();
    let jwks: serde_json::Value = serde_json::from_str(&tls_proof::get(443, &host, &jwks_path)?)?;
    let es256 = es256_keys(&jwks);
    let command = format!(
        "aws iam create-open-id-connect-provider --url {issuer} --client-id-list sts.amazonaws.com --thumbprint-list {thumbprint}"
    );
    let report =
        Report { issuer: issuer.clone(), thumbprint, discovery_issuer_matches: matches, es256_keys: es256, command };
    if args.json {
        emit(&(serde_json::to_string(&report)? + "\n"))?;
    } else {
        emit(&format!("{}\n", report.command))?;
    }
    if !matches {
        anyhow::bail!(
            "the discovery document at {issuer}/.well-known/openid-configuration reports issuer {:?}, not {issuer:?} (byte-equal required by IAM)",
            discovery["issuer"]
        );
    }
    if es256 == 0 {
        anyhow::bail!("the JWKS at {jwks_path} holds no ES256 key; STS cannot verify the broker's tokens");
    }
    Ok(crate::decide::error::exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumbprint_is_of_the_top_intermediate_and_keys_are_counted() {
        let chain = vec![b"leaf".to_vec(), b"intermediate".to_vec()];
        let expected: String = sha1::Sha1::digest(b"intermediate").iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(thumbprint(&chain), Some(expected));
        assert_eq!(thumbprint(&[]), None);
        let jwks = serde_json::json!({"keys": [{"kty": "EC", "crv": "P-256"}, {"alg": "RS256"}, {"alg": "ES256"}]});
        assert_eq!(es256_keys(&jwks), 2);
        assert_eq!(es256_keys(&serde_json::json!({})), 0);
    }
}
