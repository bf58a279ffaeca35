//! `agentkeys-hostd escrow status`: what the stack's escrow holds for this host — the secret,
//! the names, the version hostd verified and when, and whether the escrow still agrees (one AWS
//! read) — never a value. Exit 0 in sync, 1 not yet (unreachable, or lacking what the host
//! holds: the next reconcile escrows it), 3 when the escrow disagrees or belongs to another stack.

use std::fmt::Write as _;

use clap::{Args, Subcommand};

use super::{Env, emit};
use crate::decide::error::exit;
use crate::decide::times;
use crate::host::fs::Root;

#[derive(Debug, Args)]
pub struct EscrowArgs {
    #[command(subcommand)]
    pub command: EscrowCommand,
}

#[derive(Debug, Subcommand)]
pub enum EscrowCommand {
    /// Compare the host's irreplaceable secrets with the stack's escrow (names and versions only).
    Status(super::status_cmd::StatusArgs),
}

pub fn run(args: &EscrowArgs, env: &Env) -> anyhow::Result<i32> {
    let EscrowCommand::Status(a) = &args.command;
    let now = env.clock.now_unix();
    let view = crate::run::escrow_view::gather(env.rt, &Root::new(&a.root), now, true)?;
    let code = match view.remote.as_ref().map(|r| r.verdict) {
        Some("in_sync") => exit::OK,
        Some("conflict" | "foreign" | "unreadable") => exit::CONFLICT,
        None if !view.enabled => exit::OK,
        _ => exit::APPLY,
    };
    if a.json {
        emit(&(serde_json::to_string(&view)? + "\n"))?;
        return Ok(code);
    }
    let mut t = String::new();
    writeln!(t, "escrow: {}", if view.enabled { "on" } else { "OFF" })?;
    writeln!(t, "secret: {}", view.secret.as_deref().unwrap_or("none (no identity deployed yet)"))?;
    writeln!(t, "host holds: {}", view.host_names.join(", "))?;
    if let Some(r) = &view.record {
        writeln!(
            t,
            "verified: version {} ({} values), {}",
            r.version,
            r.names.len(),
            times::when(r.verified_unix, now)
        )?;
        if let Some(p) = &r.pending {
            writeln!(
                t,
                "PENDING since {} ({} attempt(s)), next try {}: {}",
                times::when(p.since_unix, now),
                p.attempts,
                times::when(p.next_try_unix, now),
                p.error
            )?;
        }
    }
    writeln!(t, "recorded: {}", view.state)?;
    if let Some(r) = &view.remote {
        writeln!(t, "escrow now: {} — {}", r.verdict, r.detail)?;
    }
    emit(&t)?;
    Ok(code)
}
