//! Every name derived from an identity, as `identity` shows it: hosts, mail domain, sender, the
//! EIP tag, and with an account id the buckets and role ARNs (the cloud side names the same).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::decide::naming::{BUCKET_CLASSES, Identity, OPTIONAL_WORKER_STEMS, ROLE_STEMS, Stack, WORKER_STEMS};

/// The names of one identity.
#[derive(Debug, Serialize)]
pub(crate) struct Names {
    pub(crate) stack: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) slot: Option<u32>,
    pub(crate) zone: String,
    pub(crate) issuer: String,
    pub(crate) deployed: bool,
    pub(crate) chain: &'static str,
    pub(crate) hosts: BTreeMap<&'static str, String>,
    pub(crate) mail_domain: String,
    pub(crate) sender: String,
    pub(crate) eip_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) account_id: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) buckets: BTreeMap<&'static str, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) roles: BTreeMap<&'static str, String>,
}

pub(crate) fn names(id: &Identity, deployed: bool, account_id: Option<String>) -> Names {
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
