//! One configuration file as written by an operator: every field optional, unknown keys refused.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Fragment {
    pub identity: Option<IdentityFragment>,
    pub aws: Option<AwsFragment>,
    pub chain: Option<ChainFragment>,
    pub buckets: Option<BucketsFragment>,
    pub broker: Option<BrokerFragment>,
    pub paths: Option<PathsFragment>,
    pub nginx: Option<NginxFragment>,
    pub acme: Option<AcmeFragment>,
    pub daemon: Option<DaemonFragment>,
    pub release: Option<ReleaseFragment>,
    pub escrow: Option<EscrowFragment>,
    /// Per managed service (unit name without `.service`).
    pub services: Option<BTreeMap<String, ServiceFragment>>,
}

/// Certificates (spec §7).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AcmeFragment {
    /// ACME directory (default: Let's Encrypt production).
    pub directory_url: Option<String>,
    /// CA bundle for the ACME API (a private CA, Pebble).
    pub ca_bundle: Option<String>,
    pub contact_email: Option<String>,
    /// This machine's public IPv4 (default: asked from EC2 IMDSv2).
    pub public_ipv4: Option<String>,
    /// Certificate profile to request when the CA offers it (e.g. `tlsserver`); else its default.
    pub profile: Option<String>,
    /// EC2 metadata endpoint (default: IMDS' own address); tests use a loopback stand-in.
    pub imds_endpoint: Option<String>,
    /// DNS server for the A-record check, `IP:PORT` (default: the first nameserver of resolv.conf).
    pub resolver: Option<String>,
    /// External account binding for CAs that require it: the key id, and a file (0600) holding
    /// the base64url HMAC key.
    pub eab_kid: Option<String>,
    pub eab_hmac_key_file: Option<String>,
    /// A second CA, ordered from when the first is unreachable or keeps failing for a host.
    pub fallback: Option<AcmeFallbackFragment>,
}

/// The fallback CA (`[acme.fallback]`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AcmeFallbackFragment {
    pub directory_url: Option<String>,
    pub ca_bundle: Option<String>,
    pub eab_kid: Option<String>,
    pub eab_hmac_key_file: Option<String>,
}

/// The escrow of the stack's irreplaceable secrets in AWS Secrets Manager (`[escrow]`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EscrowFragment {
    /// On by default; `false` keeps every secret only on this host (doctor warns on every run).
    pub enabled: Option<bool>,
}

/// Release bundles (`--release`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReleaseFragment {
    /// minisign public keys a release manifest must be signed by (one of them; several for a
    /// rotation). None: a release is trusted by its `--sha256` pin alone.
    pub keys: Option<Vec<String>>,
}

/// The daemon (`agentkeys-hostd daemon`, spec §7 renewals, drift and metrics).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DaemonFragment {
    /// How often the daemon re-converges to correct hand edits of the files it owns (default 300).
    pub drift_interval_secs: Option<u64>,
    /// Quiet time after the last configuration write before the daemon reconciles (default 1000).
    pub debounce_ms: Option<u64>,
    /// At most this much random delay after a certificate's renewal time (default 300).
    pub renewal_jitter_secs: Option<u64>,
    /// Prometheus text endpoint, loopback only (default `127.0.0.1:9464`; `""` turns it off).
    pub metrics_listen: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ServiceFragment {
    /// Extra environment for this service (keys hostd sets itself are refused).
    pub environment: Option<BTreeMap<String, String>>,
    /// `false` keeps an optional service off even when the release ships its binary.
    pub enabled: Option<bool>,
    /// Operator inputs: input name → file name in the service's directory under /etc/agentkeys.
    pub inputs: Option<BTreeMap<String, String>>,
}

/// Identity declared at first bootstrap (later runs self-identify from the deployed issuer).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct IdentityFragment {
    pub stack: Option<String>,
    pub slot: Option<u32>,
    pub zone: Option<String>,
    pub issuer_url: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AwsFragment {
    pub account_id: Option<String>,
    pub region: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChainFragment {
    pub name: Option<String>,
    pub rpc_http: Option<String>,
    /// Contract name (e.g. `SIDECAR_REGISTRY`) → address on this stack's chain.
    pub addresses: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BucketsFragment {
    pub mail: Option<String>,
    pub vault: Option<String>,
    pub memory: Option<String>,
    pub config: Option<String>,
    pub channel: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BrokerFragment {
    pub email_from_address: Option<String>,
    pub proxy_read_timeout_secs: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PathsFragment {
    /// Where the service binaries are (the old script's `/usr/local/bin` by default).
    pub bin_dir: Option<String>,
    /// hostd's own binary, used as the exec wrapper that hands services the session public key.
    pub hostd_bin: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NginxFragment {
    pub ipv6: Option<bool>,
    /// `listen` (nginx < 1.25.1: `listen 443 ssl http2`) or `directive` (`http2 on;`).
    pub http2: Option<String>,
    /// Mozilla's `intermediate` (the default) or `modern` (TLS 1.3 only).
    pub tls_profile: Option<String>,
}
