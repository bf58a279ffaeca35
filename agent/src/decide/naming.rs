//! Stack identity and every name derived from it (spec §1), plus the inverse: issuer → identity.

use serde::Serialize;
use std::fmt;

use crate::decide::validate::{check_hostname, check_label, shown};

/// Highest test slot accepted; far above any fleet we run, low enough to keep names short.
pub(crate) const MAX_SLOT: u32 = 999;

/// Which of the four kinds of broker host this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Stack {
    /// Production on the Heima chain.
    Prod,
    /// A test-fleet slot; slot 1 keeps its historical names.
    Test { slot: u32 },
    /// Production on the Base chain.
    Base,
}

impl Stack {
    /// The suffix `S` of spec §1: ``, `-test`, `-test-N`, `-base`.
    pub(crate) fn suffix(self) -> String {
        match self {
            Stack::Prod => String::new(),
            Stack::Test { slot: 1 } => "-test".into(),
            Stack::Test { slot } => format!("-test-{slot}"),
            Stack::Base => "-base".into(),
        }
    }

    /// The chain this stack runs on.
    pub fn chain(self) -> &'static str {
        match self {
            Stack::Base => "base",
            Stack::Prod | Stack::Test { .. } => "heima",
        }
    }

    pub fn is_test(self) -> bool {
        matches!(self, Stack::Test { .. })
    }

    /// The first label of the broker host, which is also the issuer's.
    fn broker_label(self) -> String {
        match self {
            Stack::Prod => "broker".into(),
            Stack::Test { slot: 1 } => "test-broker".into(),
            Stack::Test { slot } => format!("broker-test-{slot}"),
            Stack::Base => "broker-base".into(),
        }
    }
}

impl fmt::Display for Stack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stack::Prod => f.write_str("prod"),
            Stack::Test { slot } => write!(f, "test slot {slot}"),
            Stack::Base => f.write_str("base"),
        }
    }
}

/// A stack in a zone: everything the issuer encodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Identity {
    pub stack: Stack,
    pub zone: String,
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} in zone {}", self.stack, self.zone)
    }
}

/// The six worker hosts' first-label stems, in catalog order.
pub(crate) const WORKER_STEMS: [&str; 6] = ["audit", "email", "cred", "memory", "config", "classify"];
/// Hosts of the optional services with a public face (a vhost and certificate only where the
/// service runs): the channel worker and the gate. The MCP host has its own rule ([`Identity::mcp_host`]).
pub(crate) const OPTIONAL_WORKER_STEMS: [&str; 2] = ["channel", "gate"];
/// The account's one SES receipt rule set, shared by every stack (it must be the active set).
pub const RECEIPT_RULE_SET: &str = "agentkeys";

/// The CloudFormation stack of the once-per-account resources.
pub const ACCOUNT_STACK: &str = "agentkeys-account";

/// Bucket classes.
pub(crate) const BUCKET_CLASSES: [&str; 5] = ["mail", "vault", "memory", "config", "channel"];
/// IAM role stems.
pub(crate) const ROLE_STEMS: [&str; 5] = ["data", "vault", "memory", "config", "channel"];

impl Identity {
    pub fn broker_host(&self) -> String {
        format!("{}.{}", self.stack.broker_label(), self.zone)
    }

    pub fn issuer(&self) -> String {
        format!("https://{}", self.broker_host())
    }

    /// `signer`, the workers and `mcp` share one pattern, except slot 1's historical `test-mcp`.
    pub fn service_host(&self, stem: &str) -> String {
        match (stem, self.stack) {
            ("mcp", Stack::Test { slot: 1 }) => format!("test-mcp.{}", self.zone),
            _ => format!("{stem}{}.{}", self.stack.suffix(), self.zone),
        }
    }

    pub fn signer_host(&self) -> String {
        self.service_host("signer")
    }

    pub fn mcp_host(&self) -> String {
        self.service_host("mcp")
    }

    /// Bucket name for a class of `BUCKET_CLASSES`.
    pub fn bucket(&self, class: &str, account_id: &str) -> String {
        format!("agentkeys-{class}{}-{account_id}", self.stack.suffix())
    }

    /// Role name for a stem of `ROLE_STEMS`.
    pub fn role_name(&self, stem: &str) -> String {
        format!("agentkeys-{stem}-role{}", self.stack.suffix())
    }

    /// Role ARN for a stem of `ROLE_STEMS`.
    pub fn role_arn(&self, stem: &str, account_id: &str) -> String {
        format!("arn:aws:iam::{account_id}:role/{}", self.role_name(stem))
    }

    /// The host's own role, and its instance profile (one name for both, in every stack).
    pub fn host_role(&self) -> String {
        format!("agentkeys-broker-host{}", self.stack.suffix())
    }

    /// The CloudFormation stack of this stack's AWS resources.
    pub fn cloud_stack(&self) -> String {
        format!("agentkeys-stack{}", self.stack.suffix())
    }

    /// The Secrets Manager secret that escrows this stack's irreplaceable secrets.
    pub fn escrow_secret(&self) -> String {
        format!("agentkeys/escrow{}", self.stack.suffix())
    }

    /// The alias of the customer-managed KMS key that encrypts [`Self::escrow_secret`].
    pub fn escrow_kms_alias(&self) -> String {
        format!("alias/agentkeys-escrow{}", self.stack.suffix())
    }

    /// This stack's SES receipt rule in the account's shared rule set [`RECEIPT_RULE_SET`].
    pub fn receipt_rule(&self) -> String {
        format!("agentkeys-inbound{}", self.stack.suffix())
    }

    /// The DMARC record's name.
    pub fn dmarc_name(&self) -> String {
        format!("_dmarc.{}", self.mail_domain())
    }

    /// Every host whose A record points at the stack's address: the public hosts, the optional
    /// workers' (a worker switched on later must not wait for DNS) and the MCP host.
    pub fn dns_hosts(&self) -> Vec<String> {
        let mut hosts = self.public_hosts();
        hosts.extend(OPTIONAL_WORKER_STEMS.iter().map(|s| self.service_host(s)));
        hosts.push(self.mcp_host());
        hosts
    }

    pub fn mail_domain(&self) -> String {
        format!("bots{}.{}", self.stack.suffix(), self.zone)
    }

    pub fn sender(&self) -> String {
        format!("noreply{}@{}", self.stack.suffix(), self.mail_domain())
    }

    pub fn eip_name(&self) -> String {
        format!("agentkeys-broker-eip{}", self.stack.suffix())
    }

    /// Every public host that gets a vhost: broker, signer, then the six workers.
    pub fn public_hosts(&self) -> Vec<String> {
        let mut hosts = vec![self.broker_host(), self.signer_host()];
        hosts.extend(WORKER_STEMS.iter().map(|s| self.service_host(s)));
        hosts
    }

    /// Check that every derived DNS name is valid (a long zone can push a host past 253 characters).
    pub fn check_names(&self) -> Result<(), String> {
        let mut all = self.public_hosts();
        all.extend(OPTIONAL_WORKER_STEMS.iter().map(|s| self.service_host(s)));
        all.push(self.mcp_host());
        all.push(self.mail_domain());
        for host in all {
            check_hostname(&host, 3).map_err(|r| format!("derived host {host}: {r}"))?;
        }
        Ok(())
    }
}

/// Why a string is not a valid deployed issuer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{issuer} is not a valid deployed issuer: {reason}")]
pub struct IssuerError {
    pub issuer: String,
    pub reason: String,
}

/// The inverse of `Identity::issuer`: exactly `https://<first-label>.<zone>` with nothing else.
pub fn identity_from_issuer(issuer: &str) -> Result<Identity, IssuerError> {
    let fail = |reason: String| IssuerError { issuer: shown(issuer), reason };
    let host = issuer.strip_prefix("https://").ok_or_else(|| {
        fail("it must start with https:// (the IAM OIDC provider is registered for https only)".into())
    })?;
    if let Some(c) = host.chars().find(|c| matches!(c, '/' | ':' | '?' | '#' | '@')) {
        return Err(fail(format!(
            "it must be https://<host> with no port, path, query or trailing slash (found {c:?})"
        )));
    }
    let (first, zone) =
        host.split_once('.').ok_or_else(|| fail("the host has no zone after its first label".into()))?;
    check_label(first).map_err(fail)?;
    check_hostname(zone, 2).map_err(|r| fail(format!("zone: {r}")))?;
    let stack = stack_from_first_label(first).map_err(fail)?;
    let identity = Identity { stack, zone: zone.to_owned() };
    identity.check_names().map_err(fail)?;
    Ok(identity)
}

/// The first label must be `broker`, `test-broker`, `broker-test-N` (N ≥ 2, no leading zero) or
/// `broker-base`.
fn stack_from_first_label(first: &str) -> Result<Stack, String> {
    match first {
        "broker" => return Ok(Stack::Prod),
        "test-broker" => return Ok(Stack::Test { slot: 1 }),
        "broker-base" => return Ok(Stack::Base),
        _ => {}
    }
    let expected = "the first label must be broker, test-broker, broker-test-N (N >= 2) or broker-base";
    let Some(n) = first.strip_prefix("broker-test-") else {
        return Err(format!("first label {first:?}: {expected}"));
    };
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) || n.starts_with('0') {
        return Err(format!("first label {first:?}: slot {n:?} must be a number without leading zeros"));
    }
    match n.parse::<u32>() {
        Ok(1) => Err(format!("first label {first:?}: slot 1 is named test-broker, never broker-test-1")),
        Ok(slot) if (2..=MAX_SLOT).contains(&slot) => Ok(Stack::Test { slot }),
        _ => Err(format!("first label {first:?}: slot must be between 2 and {MAX_SLOT}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_label_round_trips_for_every_stack() {
        for stack in
            [Stack::Prod, Stack::Test { slot: 1 }, Stack::Test { slot: 2 }, Stack::Test { slot: 17 }, Stack::Base]
        {
            let id = Identity { stack, zone: "agents.example.co.uk".into() };
            assert_eq!(identity_from_issuer(&id.issuer()).as_ref(), Ok(&id), "{stack}");
        }
    }

    #[test]
    fn zone_too_long_for_derived_names_is_refused() {
        let zone = format!("{}.org", vec!["a".repeat(60); 4].join("."));
        let id = Identity { stack: Stack::Test { slot: 999 }, zone };
        assert!(id.check_names().is_err());
    }
}
