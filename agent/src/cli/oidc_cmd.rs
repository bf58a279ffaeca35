//! `agentkeys-hostd oidc`: once the broker certificate is live, verify the issuer's discovery
//! document and JWKS through the local nginx, and print the exact IAM command that registers the
//! issuer, with the SHA-1 thumbprint of the served chain's top intermediate computed here.

use clap::Args;

use super::emit;
use crate::decide::{identity, oidc};
use crate::host::observe;
use crate::host::{fs::Root, tls_proof};

#[derive(Debug, Args)]
pub struct OidcArgs {
    /// Filesystem root to read the deployed identity from.
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: std::path::PathBuf,
    /// Print JSON (one line).
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &OidcArgs) -> anyhow::Result<i32> {
    let root = Root::new(&args.root);
    let deployed = identity::deployed(&observe::host_records(&root)?)?
        .ok_or_else(|| anyhow::anyhow!("no deployed identity: run reconcile first"))?;
    let issuer = deployed.identity.issuer();
    let host = deployed.identity.broker_host();
    let chain = tls_proof::served_chain(443, &host)?;
    let thumbprint =
        oidc::thumbprint(&chain).ok_or_else(|| anyhow::anyhow!("nginx served no certificate for {host}"))?;
    let discovery: serde_json::Value =
        serde_json::from_str(&tls_proof::get(443, &host, "/.well-known/openid-configuration")?)?;
    let jwks_path = oidc::jwks_path(&discovery, &issuer);
    let jwks: serde_json::Value = serde_json::from_str(&tls_proof::get(443, &host, &jwks_path)?)?;
    let report = oidc::report(&issuer, thumbprint, &discovery, &jwks);
    if args.json {
        emit(&(serde_json::to_string(&report)? + "\n"))?;
    } else {
        emit(&format!("{}\n", report.command))?;
    }
    match oidc::refusal(&report, &discovery, &jwks_path) {
        Some(why) => Err(anyhow::anyhow!(why)),
        None => Ok(crate::decide::error::exit::OK),
    }
}
