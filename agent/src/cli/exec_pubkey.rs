//! `exec-with-pubkey`: wait until the broker's session public key exists and parses, then exec the
//! service, optionally with the PEM in an environment variable (a multi-line PEM cannot live in an
//! EnvironmentFile). Bounded wait on a condition, never a fixed sleep.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;

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

/// A PEM public key: one BEGIN/END block around base64 lines.
pub fn parse_public_key_pem(text: &str) -> Result<(), String> {
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let (Some(first), Some(last)) = (lines.first(), lines.last()) else {
        return Err("empty".into());
    };
    if !first.starts_with("-----BEGIN ") || !first.ends_with("PUBLIC KEY-----") {
        return Err("no -----BEGIN … PUBLIC KEY----- line".into());
    }
    if *last != first.replacen("BEGIN", "END", 1) {
        return Err("no matching END line (file incomplete?)".into());
    }
    let body = &lines[1..lines.len() - 1];
    if body.is_empty() || !body.iter().all(|l| l.bytes().all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b))) {
        return Err("body is not base64".into());
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_must_be_complete() {
        let good = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----\n";
        assert!(parse_public_key_pem(good).is_ok());
        assert!(parse_public_key_pem("-----BEGIN PUBLIC KEY-----\nMFkw\n").is_err());
        assert!(parse_public_key_pem("").is_err());
        assert!(parse_public_key_pem("-----BEGIN PRIVATE KEY-----\nMFkw\n-----END PRIVATE KEY-----\n").is_err());
    }
}
