//! The TLS every HTTPS vhost serves: Mozilla's server-side TLS guidelines, version 5.7 (the
//! version sslyze 6.3.1 bundles and the tests judge by), as nginx directives for the OpenSSL the
//! host's nginx runs with. Facts in our words (README, "The TLS it serves"):
//! * `intermediate` (the default): TLS 1.2 and 1.3; for TLS 1.2 only ECDHE (ECDSA or RSA) and
//!   DHE-RSA key exchange with AES-GCM or ChaCha20-Poly1305 — no CBC, CCM, ARIA, Camellia, 3DES or
//!   static-RSA suites; DHE with the 2048-bit RFC 7919 group `ffdhe2048`;
//! * `modern`: TLS 1.3 only (its three suites are OpenSSL's defaults, which equal Mozilla's list);
//! * both: the client's suite preference (`ssl_prefer_server_ciphers off`), key exchange on X25519,
//!   P-256 and P-384 only, a one-day session timeout with a shared cache of 10 MB and no session
//!   tickets, HSTS for two years sent with every answer; no OCSP stapling (Let's Encrypt ended
//!   its OCSP service in 2025; the guideline marks stapling optional).

use serde::Serialize;

/// The guideline version followed.
pub const GUIDELINES: &str = "Mozilla server-side TLS 5.7";

/// Which of Mozilla's configurations the vhosts serve (`[nginx] tls_profile`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsProfile {
    #[default]
    Intermediate,
    Modern,
}

/// TLS 1.3 first shipped in OpenSSL 1.1.1; an nginx on an older library cannot serve `modern`
/// and serves `intermediate` without TLS 1.3.
pub const TLS13_SINCE_OPENSSL: (u32, u32, u32) = (1, 1, 1);

/// Mozilla's intermediate TLS 1.2 suites, in its order: `(IANA code, OpenSSL name)`.
pub const INTERMEDIATE_SUITES: [(u16, &str); 9] = [
    (0xC02B, "ECDHE-ECDSA-AES128-GCM-SHA256"),
    (0xC02F, "ECDHE-RSA-AES128-GCM-SHA256"),
    (0xC02C, "ECDHE-ECDSA-AES256-GCM-SHA384"),
    (0xC030, "ECDHE-RSA-AES256-GCM-SHA384"),
    (0xCCA9, "ECDHE-ECDSA-CHACHA20-POLY1305"),
    (0xCCA8, "ECDHE-RSA-CHACHA20-POLY1305"),
    (0x009E, "DHE-RSA-AES128-GCM-SHA256"),
    (0x009F, "DHE-RSA-AES256-GCM-SHA384"),
    (0xCCAA, "DHE-RSA-CHACHA20-POLY1305"),
];

/// The key-exchange groups both configurations allow (OpenSSL names).
pub const CURVES: &str = "X25519:prime256v1:secp384r1";

/// HSTS `max-age`: two years, the guideline's minimum.
pub const HSTS_MAX_AGE_SECS: u32 = 63_072_000;

/// RFC 7919's 2048-bit group, the DH parameters the guideline prescribes (public constants, PKCS#3).
pub const FFDHE2048_PEM: &str = "-----BEGIN DH PARAMETERS-----
MIIBCAKCAQEA//////////+t+FRYortKmq/cViAnPTzx2LnFg84tNpWp4TZBFGQz
+8yTnc4kmz75fS/jY2MMddj2gbICrsRhetPfHtXV/WVhJDP1H18GbtCFY2VVPe0a
87VXE15/V8k1mE8McODmi3fipona8+/och3xWKE2rec1MKzKT0g6eXq8CrGCsyT7
YdEIqUuyyOP7uWrat2DX9GgdT0Kj3jlN9K5W7edjcrsZCwenyO4KbXCeAvzhzffi
7MA0BM0oNC9hkXL+nOmFg/+OTxIy7vKBg8P+OxtMb61zO7X8vC7CIAXFjvGDfRaD
ssbzSibBsu/6iGtCOGEoXJf//////////wIBAg==
-----END DH PARAMETERS-----
";

impl TlsProfile {
    pub fn name(self) -> &'static str {
        match self {
            TlsProfile::Intermediate => "intermediate",
            TlsProfile::Modern => "modern",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "intermediate" => Some(TlsProfile::Intermediate),
            "modern" => Some(TlsProfile::Modern),
            _ => None,
        }
    }
}

/// The per-vhost TLS directives' values, as the vhost template uses them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServedTls {
    pub guidelines: &'static str,
    pub profile: &'static str,
    /// `ssl_protocols`.
    pub protocols: &'static str,
    /// `ssl_ciphers` (TLS 1.2 and below), when the profile has TLS 1.2 suites.
    pub ciphers: Option<String>,
    /// `ssl_ecdh_curve`.
    pub curves: &'static str,
    pub hsts_max_age: u32,
}

/// What the vhosts serve for `profile` on an nginx linked with OpenSSL `openssl` (unknown: assume
/// TLS 1.3, every supported release has it). `modern` on an OpenSSL without TLS 1.3 is refused.
pub fn served(profile: TlsProfile, openssl: Option<(u32, u32, u32)>) -> Result<ServedTls, String> {
    let has_tls13 = openssl.is_none_or(|v| v >= TLS13_SINCE_OPENSSL);
    let protocols = match (profile, has_tls13) {
        (TlsProfile::Intermediate, true) => "TLSv1.2 TLSv1.3",
        (TlsProfile::Intermediate, false) => "TLSv1.2",
        (TlsProfile::Modern, true) => "TLSv1.3",
        (TlsProfile::Modern, false) => {
            let (a, b, c) = openssl.unwrap_or_default();
            return Err(format!(
                "the modern TLS profile needs TLS 1.3, which this nginx's OpenSSL {a}.{b}.{c} lacks (from 1.1.1); set [nginx] tls_profile = \"intermediate\""
            ));
        }
    };
    Ok(ServedTls {
        guidelines: GUIDELINES,
        profile: profile.name(),
        protocols,
        ciphers: (profile == TlsProfile::Intermediate)
            .then(|| INTERMEDIATE_SUITES.iter().map(|(_, name)| *name).collect::<Vec<_>>().join(":")),
        curves: CURVES,
        hsts_max_age: HSTS_MAX_AGE_SECS,
    })
}

/// The http-level settings every vhost shares, declared once (`conf.d/`, which every supported
/// nginx layout includes): session cache, timeout and tickets, and the DH group for DHE.
pub fn shared_conf(dhparam_path: &str) -> String {
    format!(
        "# Managed by agentkeys-hostd: TLS settings shared by every vhost ({GUIDELINES}).\n\
         # Edits here are replaced on the next reconcile.\n\
         ssl_session_timeout 1d;\n\
         ssl_session_cache shared:AgentkeysTLS:10m;\n\
         ssl_session_tickets off;\n\
         ssl_dhparam {dhparam_path};\n"
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn intermediate_serves_tls12_and_13_with_mozillas_suites_only() {
        let t = served(TlsProfile::Intermediate, Some((3, 0, 15))).unwrap();
        assert_eq!(t.protocols, "TLSv1.2 TLSv1.3");
        let ciphers = t.ciphers.unwrap();
        assert_eq!(ciphers.split(':').count(), 9);
        for bad in ["CBC", "SHA:", "CCM", "ARIA", "CAMELLIA", "DES", "RC4"] {
            assert!(!format!("{ciphers}:").contains(bad), "{bad} in {ciphers}");
        }
        assert!(ciphers.split(':').all(|c| c.contains("GCM") || c.contains("CHACHA20")), "{ciphers}");
        assert_eq!(t.curves, "X25519:prime256v1:secp384r1");
        assert_eq!(t.hsts_max_age, 730 * 24 * 3600);
    }

    #[test]
    fn modern_is_tls13_only_and_needs_openssl_111() {
        let t = served(TlsProfile::Modern, Some((1, 1, 1))).unwrap();
        assert_eq!((t.protocols, t.ciphers), ("TLSv1.3", None));
        let e = served(TlsProfile::Modern, Some((1, 1, 0))).unwrap_err();
        assert!(e.contains("OpenSSL 1.1.0") && e.contains("tls_profile"), "{e}");
        assert_eq!(served(TlsProfile::Intermediate, Some((1, 0, 2))).unwrap().protocols, "TLSv1.2");
        assert_eq!(served(TlsProfile::Modern, None).unwrap().protocols, "TLSv1.3");
    }

    #[test]
    fn profiles_parse_by_name_only() {
        assert_eq!(TlsProfile::parse("modern"), Some(TlsProfile::Modern));
        assert_eq!(TlsProfile::parse("intermediate"), Some(TlsProfile::Intermediate));
        assert_eq!(TlsProfile::parse("old"), None);
        assert_eq!(TlsProfile::parse("Modern"), None);
        assert_eq!(TlsProfile::default().name(), "intermediate");
    }

    #[test]
    fn the_shared_file_turns_tickets_off_and_names_the_dh_group() {
        let c = shared_conf("/etc/nginx/x.pem");
        assert!(c.contains("ssl_session_tickets off;") && c.contains("ssl_dhparam /etc/nginx/x.pem;"), "{c}");
        assert!(c.contains("ssl_session_timeout 1d;") && c.contains("shared:AgentkeysTLS:10m"), "{c}");
        assert!(FFDHE2048_PEM.starts_with("-----BEGIN DH PARAMETERS-----"));
    }
}
