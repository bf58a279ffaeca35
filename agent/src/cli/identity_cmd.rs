//! `agentkeys-hostd identity`: the identity and every derived name (spec §1).

use std::fmt::Write as _;

use super::IdentityArgs;
use crate::decide::names::names;
use crate::decide::settings::{self, Flags};
use crate::host::fs::Root;
use crate::run::prepare::{self, Request};

pub fn run(args: &IdentityArgs) -> anyhow::Result<i32> {
    let c = &args.common;
    let root = Root::new(&c.root);
    let req = Request {
        selectors: c.selectors(),
        flags: Flags { account_id: c.account_id.clone(), region: None },
        env_file: c.env_file.clone(),
        ..Request::default()
    };
    let inputs = prepare::read_inputs(&root, &req)?;
    let identity = prepare::decide_identity(&req, &inputs)?;
    let account = settings::resolve_account_id(
        &req.flags,
        &inputs.config,
        inputs.env.as_ref(),
        inputs.deployed.as_ref(),
        &mut Vec::new(),
    )?;
    let n = names(&identity, inputs.deployed.is_some(), account);
    if c.json {
        super::emit(&(serde_json::to_string(&n)? + "\n"))?;
        return Ok(crate::decide::error::exit::OK);
    }
    let mut out = String::new();
    let state = if n.deployed { "deployed" } else { "declared, not yet deployed" };
    writeln!(out, "identity: {identity} ({state})\nissuer:   {}\nchain:    {}", n.issuer, n.chain)?;
    for (k, v) in &n.hosts {
        writeln!(out, "host {k:<9} {v}")?;
    }
    writeln!(out, "mail domain    {}\nsender         {}\nEIP Name tag   {}", n.mail_domain, n.sender, n.eip_name)?;
    if n.account_id.is_none() {
        writeln!(out, "(pass --account-id to show bucket and role names)")?;
    }
    for (k, v) in &n.buckets {
        writeln!(out, "bucket {k:<7} {v}")?;
    }
    for (k, v) in &n.roles {
        writeln!(out, "role {k:<9} {v}")?;
    }
    super::emit(&out)?;
    Ok(crate::decide::error::exit::OK)
}
