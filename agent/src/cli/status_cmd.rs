//! `agentkeys-hostd status`: the identity, every managed service's state, the last run's result,
//! and an unfinished run if there is one.

use std::fmt::Write as _;

use clap::Args;

use super::emit;
use crate::decide::inputs::Presence;
use crate::decide::times;
use crate::host::fs::Root;

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Filesystem root to read instead of /.
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: std::path::PathBuf,
    /// Print JSON (one line).
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &StatusArgs, env: &super::Env) -> anyhow::Result<i32> {
    let status = crate::run::status::gather(env.rt, env.clock, &Root::new(&args.root))?;
    let now = env.clock.now_unix();
    if args.json {
        emit(&(serde_json::to_string(&status)? + "\n"))?;
        return Ok(crate::decide::error::exit::OK);
    }
    let mut t = String::new();
    match &status.identity {
        Some(i) => writeln!(t, "identity: {} in zone {} (issuer {}, from {})", i.stack, i.zone, i.issuer, i.record)?,
        None => writeln!(t, "identity: none deployed yet")?,
    }
    match &status.last_run {
        // No-op runs write nothing, so this is the last run that changed something or failed.
        Some(r) => {
            let finished = times::when(i64::try_from(r.finished_unix).unwrap_or_default(), now);
            writeln!(t, "last change: {} ({} ms, finished {finished})", r.result, r.duration_ms)?
        }
        None => writeln!(t, "last change: never")?,
    }
    if let Some(p) = &status.pending {
        writeln!(t, "unfinished run (pid {}): will restart {}", p.pid, p.restarts.join(", "))?;
    }
    writeln!(t, "platform: {}", status.platform.summary())?;
    if let Some(e) = &status.escrow {
        writeln!(t, "escrow: {}", e.state)?;
    }
    writeln!(t, "systemd: {}", status.systemd)?;
    for (unit, s) in &status.services {
        writeln!(t, "  {unit:<36} {}/{} pid {} ({})", s.active_state, s.sub_state, s.main_pid, s.unit_file_state)?;
    }
    // An optional service the release does not ship is left out here (the JSON has it).
    for (unit, p) in status.optional_services.iter().filter(|(_, p)| **p != Presence::NotShipped) {
        writeln!(t, "  {unit:<36} {}", p.describe(unit))?;
    }
    for (host, c) in &status.certificates {
        let until = c.not_after.map(|t| format!(", not after {}", times::when(t, now))).unwrap_or_default();
        writeln!(t, "  {host:<36} {}{until}", c.state)?;
    }
    for r in &status.renewals {
        if let (Some(at), Some(why)) = (r.renew_at, &r.renew_why) {
            let alarm = if r.overdue { "  OVERDUE" } else { "" };
            let from = r.ca.as_deref().map(|c| format!(", from {c}")).unwrap_or_default();
            writeln!(t, "  {:<36} renewal {} ({why}{from}){alarm}", r.host, times::when(at, now))?;
        }
    }
    match &status.daemon {
        Some(d) => {
            let runs: u64 = d.reconciles.values().sum();
            writeln!(t, "daemon: pid {}, {runs} reconcile(s), {} correction(s)", d.pid, d.corrections)?;
            if let Some(w) = &d.next_wake {
                writeln!(t, "  next: {} {} ({})", w.trigger, times::when(w.at, now), w.why)?;
            }
            if let Some(n) = &d.note {
                writeln!(t, "  note: {n}")?;
            }
        }
        None => writeln!(t, "daemon: not running")?,
    }
    for (host, l) in &status.acme_ledger {
        if let Some(url) = &l.unpause_url {
            writeln!(t, "  {host:<36} PAUSED by the CA: lift it at {url}, then reconcile --unpaused {host}")?;
            continue;
        }
        writeln!(
            t,
            "  {host:<36} {} failed order(s), last {}; next attempt {}",
            l.failures,
            l.last_error_class,
            times::when(l.next_attempt, now)
        )?;
    }
    emit(&t)?;
    Ok(crate::decide::error::exit::OK)
}
