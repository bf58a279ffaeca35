//! This machine's DNS facts, gathered once and shared by the certificate step and `doctor`: its
//! public IPv4 (configured, else EC2 IMDSv2) and the resolver to ask (configured, else the first
//! `nameserver` of `/etc/resolv.conf`); then per host the verdict of the pure policy.

use std::net::{Ipv4Addr, SocketAddr};

use crate::decide::acme_policy::{self, DnsVerdict};
use crate::decide::settings::AcmeSettings;
use crate::host::dns;
use crate::host::fs::Root;

/// What a DNS verdict needs to know about this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DnsFacts {
    /// `Err` says why it is unknown.
    pub public_ip: Result<Ipv4Addr, String>,
    pub resolver: Option<SocketAddr>,
}

pub(crate) const NO_RESOLVER: &str = "no DNS resolver: set acme.resolver or a nameserver in /etc/resolv.conf";

impl DnsFacts {
    /// Gather the facts (IMDS is asked only when no address is configured).
    pub(crate) async fn gather(root: &Root, acme: &AcmeSettings) -> Self {
        let public_ip = match acme.public_ipv4 {
            Some(ip) => Ok(ip),
            None => crate::host::imds::public_ipv4(acme.imds_endpoint.as_deref()).await.map_err(|e| format!("{e:#}")),
        };
        let resolver = acme.resolver.or_else(|| {
            std::fs::read_to_string(root.path("/etc/resolv.conf")).ok().and_then(|t| dns::resolv_conf_server(&t))
        });
        Self { public_ip, resolver }
    }

    /// Does `host` point here? `Err` when this machine's address or a resolver is unknown.
    pub(crate) fn verdict(&self, host: &str) -> Result<DnsVerdict, String> {
        let ip = self.public_ip.clone()?;
        let resolver = self.resolver.ok_or_else(|| NO_RESOLVER.to_owned())?;
        Ok(acme_policy::dns_verdict(ip, &dns::lookup_a(resolver, host)))
    }
}
