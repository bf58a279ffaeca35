//! `agentkeys-hostd release verify`: check a bundle offline as a host would before staging it —
//! the manifest's signature by a pinned key, its expiry, and every file's hash; `release keys`
//! prints the pinned keys (the SSM install document checks a package against them).

use clap::{Args, Subcommand};

use super::{Env, emit};
use crate::decide::error::exit;
use crate::decide::release::Trust;
use crate::host::fs::Root;
use crate::host::{observe, releases};

#[derive(Debug, Args)]
pub struct ReleaseArgs {
    #[command(subcommand)]
    pub command: ReleaseCommand,
}

#[derive(Debug, Subcommand)]
pub enum ReleaseCommand {
    /// Verify a bundle (directory or archive) offline; exit 2 naming what fails.
    Verify(VerifyArgs),
    /// Print the release keys this host pins (`[release] keys`), one per line.
    Keys(KeysArgs),
}

#[derive(Debug, Args)]
pub struct KeysArgs {
    /// Configuration root.
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: std::path::PathBuf,
}

fn pinned(root: &std::path::Path) -> anyhow::Result<Vec<String>> {
    let config = crate::decide::config::load(&observe::config_files(&Root::new(root))?)?;
    Ok(config.release_keys.map(|k| k.value).unwrap_or_default())
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The bundle: a directory, a .tar.gz or a .tar.zst file.
    pub src: String,
    /// A minisign public key to trust (repeatable); default: the host's `[release] keys`.
    #[arg(long, value_name = "KEY")]
    pub key: Vec<String>,
    /// SHA-256 of the archive (an extra pin).
    #[arg(long, value_name = "HEX")]
    pub sha256: Option<String>,
    /// Configuration root to read `[release] keys` from.
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: std::path::PathBuf,
}

pub fn run(args: &ReleaseArgs, env: &Env) -> anyhow::Result<i32> {
    let a = match &args.command {
        ReleaseCommand::Verify(a) => a,
        ReleaseCommand::Keys(k) => {
            let keys = pinned(&k.root)?;
            emit(&keys.iter().map(|k| format!("{k}\n")).collect::<String>())?;
            return Ok(exit::OK);
        }
    };
    let keys = if a.key.is_empty() { pinned(&a.root)? } else { a.key.clone() };
    let trust = Trust { keys, ..Trust::default() };
    let loaded = releases::load(&a.src, a.sha256.as_deref(), &trust, env.clock.now_unix())?;
    let signed = if trust.keys.is_empty() { "no release keys pinned: hashes only" } else { "signed by a pinned key" };
    emit(&format!(
        "verified: release {} ({signed}; {} files match the manifest)\n",
        loaded.manifest.id(),
        loaded.binaries.len()
    ))?;
    Ok(exit::OK)
}
