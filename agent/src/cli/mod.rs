//! Command line (clap derive): the doc comments are the help text.

mod cloud_cmd;
mod daemon_cmd;
mod doctor_cmd;
mod escrow_cmd;
pub mod exec_pubkey;
mod identity_cmd;
mod oidc_cmd;
pub(crate) mod reconcile_cmd;
mod release_cmd;
mod status_cmd;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::decide::identity::Selectors;

/// agentkeys-hostd: converge an AgentKeys broker host (units, env files, vhosts, secrets).
#[derive(Debug, Parser)]
#[command(name = "agentkeys-hostd", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print this host's identity and every name derived from it.
    Identity(IdentityArgs),
    /// Converge the host to its desired state (idempotent).
    Reconcile(ReconcileArgs),
    /// Verify the broker's OIDC discovery and print the IAM provider command with its thumbprint.
    Oidc(oidc_cmd::OidcArgs),
    /// Show the identity, every service's state and the last run.
    Status(status_cmd::StatusArgs),
    /// Keep the host converged: certificate renewals, drift correction, config changes, metrics.
    Daemon(daemon_cmd::DaemonArgs),
    /// Pre-flight checks: nginx, port 80, units lint, disk, clock, ACME directory, DNS per host.
    Doctor(doctor_cmd::DoctorArgs),
    /// The stack's escrow of irreplaceable secrets (Secrets Manager): what is escrowed, in sync or not.
    Escrow(escrow_cmd::EscrowArgs),
    /// Release bundles: verify one offline as a host would before staging it.
    Release(release_cmd::ReleaseArgs),
    /// The cloud side: a stack's AWS resources as CloudFormation, from the same names as the host.
    Cloud(cloud_cmd::CloudArgs),
    /// Run a service with the broker's session public key (used by the rendered units).
    #[command(hide = true)]
    ExecWithPubkey(exec_pubkey::ExecArgs),
}

/// Identity selectors; on a deployed host they may only confirm what is deployed.
#[derive(Debug, Clone, Args)]
pub struct SelectorArgs {
    /// A test stack (slot 1 unless --slot is given). Alias: --test.
    #[arg(long, visible_alias = "test")]
    pub ci: bool,
    /// Test-fleet slot N (with --ci).
    #[arg(long, value_name = "N")]
    pub slot: Option<u32>,
    /// The Base-chain production stack.
    #[arg(long)]
    pub base: bool,
    /// DNS zone, e.g. litentry.org.
    #[arg(long, value_name = "ZONE")]
    pub zone: Option<String>,
    /// The OIDC issuer, https://<broker host>.
    #[arg(long, value_name = "URL")]
    pub issuer_url: Option<String>,
    /// AWS account id (12 digits).
    #[arg(long, value_name = "ID")]
    pub account_id: Option<String>,
    /// Operator env file (KEY=VALUE; parsed, never executed).
    #[arg(long, value_name = "FILE")]
    pub env_file: Option<PathBuf>,
    /// Filesystem root to act on instead of /.
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

impl SelectorArgs {
    /// No selectors: the deployed identity decides (what the daemon runs).
    pub fn flagless(root: PathBuf) -> Self {
        Self {
            ci: false,
            slot: None,
            base: false,
            zone: None,
            issuer_url: None,
            account_id: None,
            env_file: None,
            root,
            json: false,
        }
    }

    pub fn selectors(&self) -> Selectors {
        Selectors {
            ci: self.ci,
            slot: self.slot,
            base: self.base,
            zone: self.zone.clone(),
            issuer_url: self.issuer_url.clone(),
        }
    }
}

#[derive(Debug, Args)]
pub struct IdentityArgs {
    #[command(flatten)]
    pub common: SelectorArgs,
}

#[derive(Debug, Args)]
pub struct ReconcileArgs {
    #[command(flatten)]
    pub common: SelectorArgs,
    /// AWS region, e.g. us-east-1.
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,
    /// Do not touch systemd (units are written, nothing is reloaded or restarted).
    #[arg(long)]
    pub no_systemd: bool,
    /// Do not request certificates.
    #[arg(long)]
    pub no_acme: bool,
    /// Print the plan and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Install and switch to this release: a directory, a .tar.gz/.tar.zst file, or an https:// URL.
    #[arg(long, value_name = "SRC")]
    pub release: Option<String>,
    /// SHA-256 of the release archive (required for URLs unless the host pins release keys).
    #[arg(long, value_name = "HEX")]
    pub sha256: Option<String>,
    /// CA bundle to trust for a release URL (default: the system's roots).
    #[arg(long, value_name = "FILE")]
    pub release_ca: Option<PathBuf>,
    /// Releases to keep on disk besides the current one.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub keep_releases: usize,
    /// Wait this long for another converge to finish before giving up (exit 75).
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    pub lock_wait_secs: u64,
    /// Accept a release older than the highest this host has installed (a deliberate rollback).
    #[arg(long)]
    pub allow_downgrade: bool,
    /// The CA's pause of HOST was lifted at its unpause URL: order it again now (repeatable).
    #[arg(long, value_name = "HOST")]
    pub unpaused: Vec<String>,
    /// Who asked for this run when it is not the command line (the daemon's trigger).
    #[arg(skip)]
    pub trigger: Option<String>,
}

/// Write to stdout; a closed pipe (`| head`) ends output quietly instead of panicking.
pub(crate) fn emit(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// What `main` hands every command: the one runtime and the one clock of the process.
#[allow(missing_debug_implementations)] // a runtime and a trait object
pub struct Env<'a> {
    pub rt: &'a tokio::runtime::Runtime,
    pub clock: &'a dyn crate::host::clock::Clock,
}

/// Run a parsed command line; returns the exit code.
pub fn run(cli: Cli, env: &Env) -> anyhow::Result<i32> {
    match cli.command {
        Command::Identity(a) => identity_cmd::run(&a),
        Command::Reconcile(a) => reconcile_cmd::run(&a, env),
        Command::Status(a) => status_cmd::run(&a, env),
        Command::Daemon(a) => daemon_cmd::run(&a, env),
        Command::Doctor(a) => doctor_cmd::run(&a, env),
        Command::Oidc(a) => oidc_cmd::run(&a),
        Command::Cloud(a) => cloud_cmd::run(&a),
        Command::Release(a) => release_cmd::run(&a, env),
        Command::Escrow(a) => escrow_cmd::run(&a, env),
        Command::ExecWithPubkey(a) => exec_pubkey::run(&a),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
