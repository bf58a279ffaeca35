//! `agentkeys-hostd reconcile`: the flags, the host, and the printing; the run is `crate::run`.

use std::fmt::Write as _;
use std::time::Duration;

use super::{Env, ReconcileArgs, emit};
use crate::decide::error::{InvalidInput, Source, exit};
use crate::decide::plan::Options;
use crate::decide::settings::Flags;
use crate::host::systemd::Systemd;
use crate::host::{accounts, fs::Root};
use crate::run::prepare::Request;
use crate::run::{self, Host, ReleaseSource, RunRequest};

fn refuse(flag: &str, why: &str) -> anyhow::Error {
    InvalidInput::new(Source::Flag(flag.into()), why.to_owned()).into()
}

/// The run the flags ask for (refusing combinations that cannot work).
fn request(args: &ReconcileArgs) -> anyhow::Result<RunRequest> {
    let c = &args.common;
    let release = match &args.release {
        Some(url) if url.starts_with("https://") => {
            Some(ReleaseSource::Url { url: url.clone(), sha256: args.sha256.clone(), ca: args.release_ca.clone() })
        }
        Some(path) => Some(ReleaseSource::Local { path: path.clone(), sha256: args.sha256.clone() }),
        None => None,
    };
    Ok(RunRequest {
        request: Request {
            selectors: c.selectors(),
            flags: Flags { account_id: c.account_id.clone(), region: args.region.clone() },
            env_file: c.env_file.clone(),
            options: Options::default(),
        },
        release,
        dry_run: args.dry_run,
        acme: !args.no_acme,
        keep_releases: args.keep_releases,
        lock_wait: Duration::from_secs(args.lock_wait_secs),
        trigger: args.trigger.clone(),
        unpaused: args.unpaused.clone(),
        allow_downgrade: args.allow_downgrade,
    })
}

pub fn run(args: &ReconcileArgs, env: &Env) -> anyhow::Result<i32> {
    let c = &args.common;
    let root = Root::new(&c.root);
    if !args.dry_run && !args.no_acme && args.no_systemd {
        return Err(refuse(
            "--no-acme",
            "certificates are served after an nginx reload through systemd; with --no-systemd add --no-acme",
        ));
    }
    if !args.dry_run && !args.no_systemd && !root.is_real_root() {
        return Err(refuse(
            "--root",
            "driving systemd only makes sense on /; add --no-systemd to converge files under another root",
        ));
    }
    for host in &args.unpaused {
        crate::decide::validate::check_hostname(host, 2)
            .map_err(|why| refuse("--unpaused", &format!("{host:?}: {why}")))?;
    }
    let ask = request(args)?;
    // Under another root systemd is never queried (a dry run there plans the files only).
    let drive = !args.no_systemd && root.is_real_root();
    let connect = || env.rt.block_on(Systemd::connect());
    let db = accounts::for_root(&root);
    let host = Host {
        root: &root,
        accounts: db.as_ref(),
        systemd: drive.then_some(&connect as &dyn Fn() -> anyhow::Result<Systemd>),
        health: &run::health_gate,
        clock: env.clock,
        rt: env.rt,
    };
    let report = run::reconcile(&host, &ask)?;
    if c.json {
        emit(&(serde_json::to_string(&report.summary)? + "\n"))?;
    }
    if args.dry_run {
        emit(&report.plan.to_string())?;
        return Ok(exit::OK);
    }
    let mut text = String::new();
    for line in &report.done {
        writeln!(text, "done: {line}")?;
    }
    for note in &report.summary.notes {
        writeln!(text, "note: {note}")?;
    }
    for (unit, missing) in &report.summary.waiting {
        writeln!(text, "waiting: {unit} starts once {} exist(s) (root, mode 0600)", missing.join(", "))?;
    }
    let s = &report.summary;
    if report.error.is_none() {
        writeln!(
            text,
            "{}: {} changed, {} unchanged, {} (re)started",
            s.result,
            s.changed,
            s.unchanged,
            s.restarts.len()
        )?;
    }
    emit(&text)?;
    match report.into_error() {
        None => Ok(exit::OK),
        Some(e) => Err(e),
    }
}
