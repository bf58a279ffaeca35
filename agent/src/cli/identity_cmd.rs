//! `agentkeys-hostd identity`: the identity and every derived name (spec §1).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::IdentityArgs;
use crate::decide::naming::{BUCKET_CLASSES, Identity, OPTIONAL_WORKER_STEMS, ROLE_STEMS, Stack, WORKER_STEMS};
use crate::decide::settings::{self, Flags};
use crate::host::fs::Root;
use crate::run::prepare::{self, Request};

#[derive(Debug, Serialize)]
struct Names {
    stack: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    slot: Option<u32>,
    zone: String,
    issuer: String,
    deployed: bool,
    chain: &'static str,
    hosts: BTreeMap<&'static str, String>,
    mail_domain: String,
    sender: String,
    eip_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    account_id: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    buckets: BTreeMap<&'static str, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    roles: BTreeMap<&'static str, String>,
}

fn names(id: &Identity, deployed: bool, account_id: Option<String>) -> Names {
    let (stack, slot) = match id.stack {
        Stack::Prod => ("prod", None),
        Stack::Test { slot } => ("test", Some(slot)),
        Stack::Base => ("base", None),
    };
    let mut hosts =
        BTreeMap::from([("broker", id.broker_host()), ("signer", id.signer_host()), ("mcp", id.mcp_host())]);
    for stem in WORKER_STEMS.iter().chain(OPTIONAL_WORKER_STEMS.iter()) {
        hosts.insert(stem, id.service_host(stem));
    }
    let (buckets, roles) = match &account_id {
        Some(a) => (
            BUCKET_CLASSES.iter().map(|c| (*c, id.bucket(c, a))).collect(),
            ROLE_STEMS.iter().map(|r| (*r, id.role_arn(r, a))).collect(),
        ),
        None => (BTreeMap::new(), BTreeMap::new()),
    };
    Names {
        stack,
        slot,
        zone: id.zone.clone(),
        issuer: id.issuer(),
        deployed,
        chain: id.stack.chain(),
        hosts,
        mail_domain: id.mail_domain(),
        sender: id.sender(),
        eip_name: id.eip_name(),
        account_id,
        buckets,
        roles,
    }
}

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
