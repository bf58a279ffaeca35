//! `agentkeys-hostd doctor`: the pre-flight checks of spec §10 (nginx, port 80, units lint, disk,
//! clock, ACME directory, DNS per host), printed as pass/warn/fail text or JSON. Read-only.

use clap::Args;

use super::{Env, emit};
use crate::decide::doctor;
use crate::host::fs::Root;

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Filesystem root to read instead of / (network checks still run).
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: std::path::PathBuf,
    /// Print JSON (one line).
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &DoctorArgs, env: &Env) -> anyhow::Result<i32> {
    let checks = crate::run::preflight::checks(env.rt, env.clock, &Root::new(&args.root))?;
    if args.json {
        emit(
            &(serde_json::to_string(
                &serde_json::json!({ "checks": checks, "failed": doctor::exit_code(&checks) == 1 }),
            )? + "\n"),
        )?;
    } else {
        emit(&doctor::render_text(&checks))?;
    }
    Ok(doctor::exit_code(&checks))
}
