//! `exec-with-pubkey`: wait until the broker's session public key exists and parses, then exec the
//! service, optionally with the PEM in an environment variable (a multi-line PEM cannot live in an
//! EnvironmentFile). Bounded wait on a condition, never a fixed sleep.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;

use crate::decide::pubkey::parse_public_key_pem;

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// The PEM file to wait for.
    #[arg(long, value_name = "FILE")]
    pub pem: PathBuf,
    /// Pass the PEM's contents in this environment variable.
    #[arg(long, value_name = "NAME")]
    pub env: Option<String>,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 90)]
    pub timeout_secs: u64,
    /// The service command line.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

pub fn run(args: &ExecArgs) -> anyhow::Result<i32> {
    let deadline = Instant::now() + Duration::from_secs(args.timeout_secs);
    let pem = loop {
        let last = match std::fs::read_to_string(&args.pem) {
            Ok(text) => match parse_public_key_pem(&text) {
                Ok(()) => break text,
                Err(e) => e,
            },
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            bail!(
                "the broker session public key {} is not usable after {} s ({last}); check agentkeys-broker.service",
                args.pem.display(),
                args.timeout_secs
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let (program, rest) = args.command.split_first().context("no command given after --")?;
    let mut cmd = std::process::Command::new(program);
    cmd.args(rest);
    if let Some(var) = &args.env {
        cmd.env(var, pem);
    }
    let err = cmd.exec();
    Err(err).with_context(|| format!("failed to execute {program}"))
}
