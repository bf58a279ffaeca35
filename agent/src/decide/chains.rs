//! Chain profiles as data: each chain's id, default RPC endpoint and deployed contract addresses,
//! as upstream's compiled-in chain profiles carry them (see `docs/upstream-contracts.md`).

/// The upstream commit the profiles below were read at (`crates/agentkeys-core/chain-profiles/`).
pub const PROFILES_READ_AT: &str = "c348357c690ddd3798ed7ceae599305fb62f39ff";

/// One chain hostd knows how to configure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainProfile {
    pub name: &'static str,
    /// The EVM chain id (the bundler exits at start when it cannot resolve one).
    pub chain_id: u64,
    /// The profile's `rpc.http`, used when configuration names none.
    pub default_rpc_http: &'static str,
    /// hostd contract name → address, for the contracts the profile lists.
    pub contracts: &'static [(&'static str, &'static str)],
}

/// Every upstream profile. A stack runs on heima (prod, test) or base; the others are listed so
/// the chain-id and RPC facts stay in one table.
pub(crate) const PROFILES: &[ChainProfile] = &[
    ChainProfile {
        name: "heima",
        chain_id: 212_013,
        default_rpc_http: "https://rpc.heima-parachain.heima.network",
        contracts: &[
            ("SCOPE_CONTRACT", "0xbB608CDD7374D625839D2B8793422C10A4Cff99e"),
            ("SIDECAR_REGISTRY", "0x8B50b673A479ddd084890f8D666ECAA6c9aFd172"),
            ("K3_EPOCH_COUNTER", "0x1Af7af89D7d69Ce88f42e73eb34bC2E3798D9aD9"),
            ("ENTRYPOINT", "0x6672E1b315332167aBA12E0B1d3532a7e9B1ADE9"),
            ("P256_ACCOUNT_FACTORY", "0x8eC563DFDc2016A0C2790A526b3Ed0018d6Cbf27"),
            ("PAYMASTER", "0xca36550d30e2E4dF927c53C3a5272A319D427602"),
        ],
    },
    ChainProfile {
        name: "base",
        chain_id: 8453,
        default_rpc_http: "https://mainnet.base.org",
        contracts: &[
            ("SCOPE_CONTRACT", "0x920C7FBD7853A7D9E155128cc2b940A15df21746"),
            ("SIDECAR_REGISTRY", "0xCc8CE59950fAAfACaF7033CfCBFaABfD8463bCe6"),
            ("K3_EPOCH_COUNTER", "0xbC027f76f632274F02F86de12797fbC1503465e6"),
            ("PAYMASTER", "0xC297fe74E38bB8a1270358AF1A94e4C3b5578098"),
            ("ENTRYPOINT", "0x0000000071727De22E5E9d8BAf0edAc6f37da032"),
            ("P256_ACCOUNT_FACTORY", "0x70dd3E063Ed2e4F0A45ce0f69e51E690cF52C8f8"),
        ],
    },
    ChainProfile {
        name: "heima-paseo",
        chain_id: 2013,
        default_rpc_http: "https://rpc.paseo-parachain.heima.network",
        contracts: &[],
    },
    ChainProfile {
        name: "base-sepolia",
        chain_id: 84_532,
        default_rpc_http: "https://sepolia.base.org",
        contracts: &[],
    },
    ChainProfile { name: "ethereum", chain_id: 1, default_rpc_http: "https://eth.llamarpc.com", contracts: &[] },
    ChainProfile { name: "sepolia", chain_id: 11_155_111, default_rpc_http: "https://rpc.sepolia.org", contracts: &[] },
    ChainProfile { name: "anvil", chain_id: 31_337, default_rpc_http: "http://localhost:8545", contracts: &[] },
];

/// Contract names the chain-verifying workers (creds, memory, config, classify, channel) require:
/// they exit at start when one is unset.
pub(crate) const CORE_CONTRACTS: [&str; 3] = ["SIDECAR_REGISTRY", "SCOPE_CONTRACT", "K3_EPOCH_COUNTER"];
/// Contract names the broker and bundler receive only when set (an empty value line breaks the broker).
pub(crate) const OPTIONAL_CONTRACTS: [&str; 3] = ["ENTRYPOINT", "PAYMASTER", "P256_ACCOUNT_FACTORY"];

pub fn profile(name: &str) -> Option<&'static ChainProfile> {
    PROFILES.iter().find(|p| p.name == name)
}

/// The profile's address of contract `name` on `chain`, if it lists one.
pub(crate) fn default_address(chain: &str, name: &str) -> Option<&'static str> {
    profile(chain)?.contracts.iter().find(|(n, _)| *n == name).map(|(_, a)| *a)
}

/// `<CHAIN>` of spec §3: upper-cased, `-` → `_`.
pub fn env_suffix(chain: &str) -> String {
    crate::decide::contracts::env_suffix(chain)
}

/// `<NAME>_ADDRESS_<CHAIN>`.
pub(crate) fn address_key(name: &str, chain: &str) -> String {
    format!("{name}_ADDRESS_{}", env_suffix(chain))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_keys() {
        assert_eq!(address_key("SIDECAR_REGISTRY", "heima"), "SIDECAR_REGISTRY_ADDRESS_HEIMA");
        assert_eq!(address_key("ENTRYPOINT", "base-sepolia"), "ENTRYPOINT_ADDRESS_BASE_SEPOLIA");
    }

    #[test]
    fn every_stack_chain_has_its_core_contracts_and_rpc() {
        for chain in ["heima", "base"] {
            let p = profile(chain).expect(chain);
            assert!(p.default_rpc_http.starts_with("https://"), "{chain}");
            for name in CORE_CONTRACTS.iter().chain(OPTIONAL_CONTRACTS.iter()) {
                let a = default_address(chain, name).unwrap_or_else(|| panic!("{chain} {name}"));
                assert!(a.len() == 42 && a.starts_with("0x") && a[2..].bytes().all(|b| b.is_ascii_hexdigit()));
            }
        }
        let names: std::collections::BTreeSet<_> = PROFILES.iter().map(|p| p.name).collect();
        assert_eq!(names.len(), 7, "the seven upstream profiles, each once");
        let compiled: std::collections::BTreeSet<_> = crate::decide::contracts::COMPILED_PROFILES.into_iter().collect();
        assert_eq!(names, compiled, "the profiles hostd knows are the ones upstream compiles in");
        assert!(crate::decide::contracts::PROFILES_WITH_GAS_FLOOR.iter().all(|c| profile(c).is_some()));
        assert_eq!(profile("heima").map(|p| p.chain_id), Some(212_013));
    }
}
