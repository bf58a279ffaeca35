//! Chain profiles: the env-key suffix of each chain and its default RPC endpoint, as data.

/// One chain hostd knows how to configure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainProfile {
    pub name: &'static str,
    /// Public JSON-RPC endpoint used when configuration names none. `None` means configuration
    /// must supply it: hostd never falls back to another chain's endpoint.
    pub default_rpc_http: Option<&'static str>,
}

/// Chains with a profile. A chain not listed here can still be used when its RPC is configured.
pub const PROFILES: &[ChainProfile] = &[
    // Heima's endpoint is deployment-specific (the old tooling hard-coded one); it must be
    // configured (`[chain] rpc_http` or AGENTKEYS_CHAIN_RPC_HTTP_HEIMA) or come from the deployed unit.
    ChainProfile { name: "heima", default_rpc_http: None },
    ChainProfile { name: "base", default_rpc_http: Some("https://mainnet.base.org") },
];

/// Contract names every chain-aware service receives (empty → omitted, the stack is chain-degraded).
pub const CORE_CONTRACTS: [&str; 3] = ["SIDECAR_REGISTRY", "SCOPE_CONTRACT", "K3_EPOCH_COUNTER"];
/// Contract names the broker receives only when set (an empty value line breaks the broker).
pub const OPTIONAL_CONTRACTS: [&str; 3] = ["ENTRYPOINT", "PAYMASTER", "P256_ACCOUNT_FACTORY"];

pub fn profile(name: &str) -> Option<&'static ChainProfile> {
    PROFILES.iter().find(|p| p.name == name)
}

/// `<CHAIN>` of spec §3: upper-cased, `-` → `_`.
pub fn env_suffix(chain: &str) -> String {
    chain.to_ascii_uppercase().replace('-', "_")
}

/// `<NAME>_ADDRESS_<CHAIN>`.
pub fn address_key(name: &str, chain: &str) -> String {
    format!("{name}_ADDRESS_{}", env_suffix(chain))
}

/// A chain name: lowercase letters, digits and `-`.
pub fn is_chain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_keys() {
        assert_eq!(address_key("SIDECAR_REGISTRY", "heima"), "SIDECAR_REGISTRY_ADDRESS_HEIMA");
        assert_eq!(address_key("ENTRYPOINT", "base-sepolia"), "ENTRYPOINT_ADDRESS_BASE_SEPOLIA");
        assert!(profile("heima").is_some_and(|p| p.default_rpc_http.is_none()));
        assert!(!is_chain_name("Heima") && !is_chain_name("-x") && is_chain_name("base-sepolia"));
    }
}
