//! `agentkeys-hostd reconcile`: converge the host, or print the plan with `--dry-run`.

use std::fmt::Write as _;

use super::{ReconcileArgs, emit};
use crate::engine::{self, Request};
use crate::error::{InvalidInput, Source, exit};
use crate::host::{accounts, fs::Root};
use crate::plan::Options;
use crate::settings::Flags;
use crate::{apply, report};

pub fn run(args: &ReconcileArgs) -> anyhow::Result<i32> {
    let c = &args.common;
    if !args.dry_run {
        // Say so up front rather than pretend: this build converges files, directories,
        // accounts and secrets; systemd jobs and ACME issuance are separate capabilities.
        for (missing, flag, what) in [
            (!args.no_systemd, "--no-systemd", "driving systemd"),
            (!args.no_acme, "--no-acme", "ACME issuance"),
        ] {
            if missing {
                return Err(InvalidInput::new(
                    Source::Flag(flag.into()),
                    format!("{what} is not available in this build; pass {flag} (use --dry-run to see the full plan)"),
                )
                .into());
            }
        }
    }
    let root = Root::new(&c.root);
    let db = accounts::for_root(&root);
    let req = Request {
        selectors: c.selectors(),
        flags: Flags {
            account_id: c.account_id.clone(),
            region: args.region.clone(),
        },
        env_file: c.env_file.clone(),
        options: Options {
            no_systemd: args.no_systemd,
        },
    };
    let prepared = engine::prepare(&root, db.as_ref(), &req)?;
    if args.dry_run {
        if c.json {
            emit(&(serde_json::to_string(&report::summary(&prepared, false, None))? + "\n"))?;
        }
        emit(&prepared.plan.to_string())?;
        return Ok(exit::OK);
    }
    let result = apply::apply(&root, db.as_ref(), &prepared.plan);
    let error = result.as_ref().err().map(|e| format!("{e:#}"));
    let summary = report::summary(&prepared, true, error.clone());
    if c.json {
        emit(&(serde_json::to_string(&summary)? + "\n"))?;
    }
    match result {
        Ok(outcome) => {
            let mut text = String::new();
            for line in &outcome.done {
                writeln!(text, "done: {line}")?;
            }
            for note in &summary.notes {
                writeln!(text, "note: {note}")?;
            }
            writeln!(
                text,
                "{}: {} changed, {} unchanged",
                summary.result, summary.changed, summary.unchanged
            )?;
            emit(&text)?;
            Ok(exit::OK)
        }
        Err(e) => Err(e.context(
            "reconcile failed; the actions before the failure were applied, re-run to finish",
        )),
    }
}
