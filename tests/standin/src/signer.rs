//! The dev signer's wallet derivation, as upstream's mock server does it (read at c348357 in
//! `crates/agentkeys-mock-server/src/dev_key_service.rs` and `handlers/dev_keys.rs`; facts in
//! docs/upstream-contracts.md): HKDF-SHA256 keyed by the 32-byte master secret with the salt
//! `agentkeys-signer-v0` expands the info (key version 0x01, `agentkeys-evm-wallet`, the 32 bytes of
//! the omni account, and from the second try on a retry counter) into 32 bytes, the first that is a
//! valid secp256k1 scalar being the wallet key; the address is `0x` and the last 20 bytes of the
//! Keccak-256 of the uncompressed public key without its leading 0x04. A different master secret
//! gives a different address for every account — which is why the escrow keeps it.

use k256::elliptic_curve::sec1::ToEncodedPoint;
use sha3::Digest;

const SALT: &[u8] = b"agentkeys-signer-v0";
const WALLET_DOMAIN: &[u8] = b"agentkeys-evm-wallet";
pub const KEY_VERSION: u8 = 0x01;

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

/// The address of `omni_hex` (64 hex characters) under `master_hex`; `Err` names what is malformed.
pub fn derive_address(master_hex: &str, omni_hex: &str) -> Result<String, String> {
    let master = unhex(master_hex.trim_start_matches("0x")).filter(|m| m.len() == 32).ok_or("master secret")?;
    if omni_hex.len() != 64 {
        return Err(format!("invalid_omni_account: must be 64 hex chars, got {}", omni_hex.len()));
    }
    let omni = unhex(omni_hex).ok_or("invalid_omni_account: not valid hex")?;
    let hk = hkdf::Hkdf::<sha2::Sha256>::new(Some(SALT), &master);
    for retry in 0u8..16 {
        let mut info = vec![KEY_VERSION];
        info.extend_from_slice(WALLET_DOMAIN);
        info.extend_from_slice(&omni);
        if retry > 0 {
            info.push(retry);
        }
        let mut okm = [0u8; 32];
        hk.expand(&info, &mut okm).map_err(|e| e.to_string())?;
        if let Ok(key) = k256::SecretKey::from_slice(&okm) {
            let point = key.public_key().to_encoded_point(false);
            let hash = sha3::Keccak256::digest(&point.as_bytes()[1..]);
            return Ok(format!("0x{}", hash[12..].iter().map(|b| format!("{b:02x}")).collect::<String>()));
        }
    }
    Err("internal: no valid scalar after 16 tries".into())
}

#[cfg(test)]
mod tests {
    /// Addresses the real `agentkeys-mock-server` (built from upstream at c348357) answered to
    /// `POST /dev/derive-address` on 2026-12-04 for these master secrets and omni accounts.
    #[test]
    fn matches_the_real_signer() {
        let real = [
            ("11", "5a17c0de".repeat(8), "0x0d5baa92f6e5bd5b0d008c79624f5d98124e616a"),
            ("ab", format!("{}ff", "0".repeat(62)), "0xb4cb883aaa4d4901d6f02dd0166161724d5e248d"),
        ];
        for (byte, omni, address) in real {
            assert_eq!(super::derive_address(&byte.repeat(32), &omni).expect("derives"), address);
        }
    }

    #[test]
    fn different_master_secrets_give_different_addresses_and_the_same_gives_the_same() {
        let omni = "11".repeat(32);
        let a = super::derive_address(&"01".repeat(32), &omni).expect("a");
        assert_eq!(a, super::derive_address(&"01".repeat(32), &omni).expect("again"));
        assert_ne!(a, super::derive_address(&"02".repeat(32), &omni).expect("b"));
        assert!(a.starts_with("0x") && a.len() == 42, "{a}");
        assert!(super::derive_address(&"01".repeat(32), "zz").is_err());
    }
}
