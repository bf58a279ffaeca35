//! `agentkeys-hostd cloud render`: one stack's AWS resources (or the account's) as a
//! CloudFormation template on stdout, the steps CloudFormation cannot do on stderr.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::{SelectorArgs, emit};
use crate::decide::cloud::{self, StackInputs};
use crate::decide::error::{InvalidInput, Source, exit};
use crate::decide::settings::{self, Flags};
use crate::host::fs::Root;
use crate::run::prepare::{self, Request};

#[derive(Debug, Args)]
pub struct CloudArgs {
    #[command(subcommand)]
    pub command: CloudCommand,
}

#[derive(Debug, Subcommand)]
pub enum CloudCommand {
    /// Print a stack's CloudFormation template (deterministic JSON); the steps CloudFormation
    /// cannot do go to stderr. On a deployed host the deployed identity decides.
    Render(RenderArgs),
}

#[derive(Debug, Args)]
pub struct RenderArgs {
    #[command(flatten)]
    pub common: SelectorArgs,
    /// AWS region, e.g. us-east-1.
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,
    /// The Route 53 hosted zone id of --zone (else a template parameter without default).
    #[arg(long, value_name = "ID")]
    pub hosted_zone_id: Option<String>,
    /// The broker host's EC2 instance id (else a template parameter without default).
    #[arg(long, value_name = "ID")]
    pub instance_id: Option<String>,
    /// Adopt this Elastic IP (with --eip-address) instead of allocating one.
    #[arg(long, value_name = "ID", requires = "eip_address")]
    pub eip_allocation_id: Option<String>,
    /// The adopted Elastic IP's address.
    #[arg(long, value_name = "IPV4", requires = "eip_allocation_id")]
    pub eip_address: Option<String>,
    /// Phase two: the thumbprint `agentkeys-hostd oidc` printed on the host.
    #[arg(long, value_name = "HEX")]
    pub oidc_thumbprint: Option<String>,
    /// Replicate the stack's escrow secret into this second Region (regional disaster recovery;
    /// replicate the escrow key there first, as the printed steps say).
    #[arg(long, value_name = "REGION")]
    pub escrow_replica_region: Option<String>,
    /// Render the once-per-account stack (the shared receipt rule set) instead.
    #[arg(long, conflicts_with_all = ["ci", "slot", "base", "zone", "issuer_url", "hosted_zone_id", "instance_id", "eip_allocation_id", "oidc_thumbprint", "escrow_replica_region", "adopt"])]
    pub account: bool,
    /// Print the import list for adopting an existing stack's resources instead of the template.
    #[arg(long)]
    pub adopt: bool,
}

fn bad(flag: &str, why: String) -> anyhow::Error {
    InvalidInput::new(Source::Flag(flag.into()), why).into()
}

pub fn run(args: &CloudArgs) -> anyhow::Result<i32> {
    let CloudCommand::Render(a) = &args.command;
    let c = &a.common;
    let root = Root::new(&c.root);
    let req = Request {
        selectors: c.selectors(),
        flags: Flags { account_id: c.account_id.clone(), region: a.region.clone() },
        env_file: c.env_file.clone(),
        options: crate::decide::plan::Options::default(),
    };
    let inputs = prepare::read_inputs(&root, &req)?;
    let mut notes = Vec::new();
    let region = settings::resolve_region(
        &req.flags,
        &inputs.config,
        inputs.env.as_ref(),
        inputs.deployed.as_ref(),
        &mut notes,
    )?;
    if a.account {
        emit(&(serde_json::to_string_pretty(&cloud::account_template())? + "\n"))?;
        for step in cloud::steps::account(&region) {
            eprintln!("next: {step}");
        }
        return Ok(exit::OK);
    }
    // The same precedence and cross-wire guard as `reconcile` (exit 3, nothing printed).
    let identity = prepare::decide_identity(&req, &inputs)?;
    let account_id = settings::resolve_account_id(
        &req.flags,
        &inputs.config,
        inputs.env.as_ref(),
        inputs.deployed.as_ref(),
        &mut notes,
    )?
    .ok_or_else(|| {
        bad(
            "--account-id",
            "no AWS account id: pass --account-id, set aws.account_id in hostd.toml or ACCOUNT_ID in --env-file".into(),
        )
    })?;
    let stack = StackInputs {
        identity,
        account_id,
        region,
        hosted_zone_id: a.hosted_zone_id.clone(),
        instance_id: a.instance_id.clone(),
        eip: a.eip_allocation_id.clone().zip(a.eip_address.clone()),
        oidc_thumbprint: a.oidc_thumbprint.clone(),
        escrow_replica_region: a.escrow_replica_region.clone(),
    };
    cloud::check_inputs(&stack).map_err(|(flag, why)| bad(flag, why))?;
    let out = if a.adopt { cloud::steps::import_list(&stack) } else { cloud::stack_template(&stack) };
    emit(&(serde_json::to_string_pretty(&out)? + "\n"))?;
    let file: PathBuf = format!("{}.json", stack.identity.cloud_stack()).into();
    if a.adopt {
        eprintln!(
            "next: aws cloudformation create-change-set --region {} --stack-name {} --change-set-name adopt --change-set-type IMPORT --capabilities CAPABILITY_NAMED_IAM --template-body file://{} --resources-to-import file://<this output>",
            stack.region,
            stack.identity.cloud_stack(),
            file.display()
        );
    } else {
        for step in cloud::steps::stack(&stack) {
            eprintln!("next: {step}");
        }
    }
    Ok(exit::OK)
}
