//! `agentkeys-hostd daemon`: run by hostd's own unit (`Type=notify`).

use std::path::PathBuf;

use clap::Args;

#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// Filesystem root to act on instead of / (implies --no-systemd --no-acme).
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
    /// Do not touch systemd.
    #[arg(long)]
    pub no_systemd: bool,
    /// Do not request or renew certificates.
    #[arg(long)]
    pub no_acme: bool,
}

pub fn run(args: &DaemonArgs, env: &super::Env) -> anyhow::Result<i32> {
    let started = std::time::Instant::now();
    let root = crate::host::fs::Root::new(&args.root);
    if !args.root.is_dir() {
        return Err(crate::decide::error::InvalidInput::new(
            crate::decide::error::Source::Flag("--root".into()),
            format!("{} is not a directory", args.root.display()),
        )
        .into());
    }
    let elsewhere = !root.is_real_root();
    crate::daemon::run(
        crate::daemon::Options {
            root: args.root.clone(),
            no_systemd: args.no_systemd || elsewhere,
            no_acme: args.no_acme || args.no_systemd || elsewhere,
        },
        started,
        env.rt,
        env.clock,
    )
}
