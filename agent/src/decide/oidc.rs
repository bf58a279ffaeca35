//! The OIDC provider check, pure: the thumbprint IAM pins (SHA-1 of the served chain's top
//! certificate), the ES256 keys of the JWKS, where the JWKS lives, whether the discovery
//! document names the issuer byte-for-byte, and the IAM command that registers it.

use serde::Serialize;
use sha1::Digest as _;

/// What `oidc` reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Report {
    pub(crate) issuer: String,
    pub(crate) thumbprint: String,
    pub(crate) discovery_issuer_matches: bool,
    pub(crate) es256_keys: usize,
    pub(crate) command: String,
}

/// The top certificate of the served chain (the issuing intermediate AWS pins), SHA-1, hex.
pub fn thumbprint(chain: &[Vec<u8>]) -> Option<String> {
    let top = if chain.len() > 1 { chain.last() } else { chain.first() }?;
    Some(sha1::Sha1::digest(top).iter().map(|b| format!("{b:02x}")).collect())
}

/// Count JWKS keys usable for ES256.
pub(crate) fn es256_keys(jwks: &serde_json::Value) -> usize {
    jwks["keys"]
        .as_array()
        .map_or(0, |k| k.iter().filter(|k| k["alg"] == "ES256" || (k["kty"] == "EC" && k["crv"] == "P-256")).count())
}

/// The JWKS path the discovery document points at under `issuer` (the usual one when it does not).
pub(crate) fn jwks_path(discovery: &serde_json::Value, issuer: &str) -> String {
    discovery["jwks_uri"].as_str().and_then(|u| u.strip_prefix(issuer)).unwrap_or("/.well-known/jwks.json").to_owned()
}

/// The report from what the broker served.
pub(crate) fn report(
    issuer: &str,
    thumbprint: String,
    discovery: &serde_json::Value,
    jwks: &serde_json::Value,
) -> Report {
    let command = format!(
        "aws iam create-open-id-connect-provider --url {issuer} --client-id-list sts.amazonaws.com --thumbprint-list {thumbprint}"
    );
    Report {
        issuer: issuer.to_owned(),
        thumbprint,
        discovery_issuer_matches: discovery["issuer"].as_str() == Some(issuer),
        es256_keys: es256_keys(jwks),
        command,
    }
}

/// Why IAM or STS would refuse this provider, if they would.
pub(crate) fn refusal(r: &Report, discovery: &serde_json::Value, jwks_path: &str) -> Option<String> {
    let issuer = &r.issuer;
    if !r.discovery_issuer_matches {
        return Some(format!(
            "the discovery document at {issuer}/.well-known/openid-configuration reports issuer {:?}, not {issuer:?} (byte-equal required by IAM)",
            discovery["issuer"]
        ));
    }
    (r.es256_keys == 0)
        .then(|| format!("the JWKS at {jwks_path} holds no ES256 key; STS cannot verify the broker's tokens"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumbprint_is_of_the_top_intermediate_and_keys_are_counted() {
        let chain = vec![b"leaf".to_vec(), b"intermediate".to_vec()];
        let expected: String = sha1::Sha1::digest(b"intermediate").iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(thumbprint(&chain), Some(expected));
        assert_eq!(thumbprint(&[]), None);
        let jwks = serde_json::json!({"keys": [{"kty": "EC", "crv": "P-256"}, {"alg": "RS256"}, {"alg": "ES256"}]});
        assert_eq!(es256_keys(&jwks), 2);
        assert_eq!(es256_keys(&serde_json::json!({})), 0);
    }

    #[test]
    fn the_report_and_what_iam_would_refuse() {
        let issuer = "https://broker.litentry.org";
        let good = serde_json::json!({"issuer": issuer, "jwks_uri": format!("{issuer}/keys")});
        assert_eq!(jwks_path(&good, issuer), "/keys");
        assert_eq!(jwks_path(&serde_json::json!({}), issuer), "/.well-known/jwks.json");
        let jwks = serde_json::json!({"keys": [{"alg": "ES256"}]});
        let r = report(issuer, "ab".into(), &good, &jwks);
        assert!(
            r.command
                .ends_with("--url https://broker.litentry.org --client-id-list sts.amazonaws.com --thumbprint-list ab")
        );
        assert_eq!(refusal(&r, &good, "/keys"), None);
        let slash = serde_json::json!({"issuer": format!("{issuer}/")});
        let r = report(issuer, "ab".into(), &slash, &jwks);
        assert!(refusal(&r, &slash, "/keys").is_some_and(|e| e.contains("byte-equal")));
        let r = report(issuer, "ab".into(), &good, &serde_json::json!({"keys": []}));
        assert!(refusal(&r, &good, "/keys").is_some_and(|e| e.contains("no ES256 key")));
    }
}
