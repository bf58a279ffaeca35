//! This machine's public IPv4 from EC2 IMDSv2 (token first, then the metadata path), through
//! `aws-config`'s IMDS client. The endpoint is overridable (`acme.imds_endpoint`), so tests point
//! it at a loopback stand-in that speaks the same protocol.

use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::Context;

pub async fn public_ipv4(endpoint: Option<&str>) -> anyhow::Result<Ipv4Addr> {
    let mut builder = aws_config::imds::Client::builder()
        .max_attempts(2)
        .connect_timeout(Duration::from_secs(1))
        .read_timeout(Duration::from_secs(2));
    if let Some(e) = endpoint {
        builder = builder.endpoint(e).map_err(|err| anyhow::anyhow!("acme.imds_endpoint {e:?}: {err}"))?;
    }
    let value = builder.build().get("/latest/meta-data/public-ipv4").await.map_err(|e| {
        anyhow::anyhow!("{e}").context(
            "failed to read public-ipv4 from EC2 IMDSv2 (not on EC2, no public address, or IMDS disabled?); \
             set acme.public_ipv4 in hostd.toml",
        )
    })?;
    let text: &str = value.as_ref();
    text.trim().parse().with_context(|| format!("IMDS answered {:?} for public-ipv4, not an IPv4 address", text.trim()))
}
