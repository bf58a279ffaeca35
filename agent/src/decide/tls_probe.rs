//! What `doctor` asks a vhost to prove it serves its TLS profile: hand-built ClientHellos that
//! offer only what the profile excludes (a protocol below its floor, TLS 1.2 suites outside it,
//! key-exchange groups outside it), and how the first answer is read — a ServerHello (or a
//! HelloRetryRequest, which also is one) means the server accepted, an alert means it refused.
//! Pure: the host module sends the bytes and hands back what came.

use crate::decide::doctor::{Check, Verdict};
use crate::decide::tls_profile::{GUIDELINES, INTERMEDIATE_SUITES, TlsProfile};

/// Record and handshake versions on the wire.
pub const TLS11: u16 = 0x0302;
pub const TLS12: u16 = 0x0303;
pub const TLS13: u16 = 0x0304;

/// TLS 1.2-and-below suites outside both profiles: CBC (with ECDHE, DHE and static RSA), AEAD
/// with static RSA key exchange, CCM, ARIA, Camellia, 3DES. `(IANA code, OpenSSL name)`.
pub const OUTSIDE_SUITES: [(u16, &str); 40] = [
    (0xC009, "ECDHE-ECDSA-AES128-SHA"),
    (0xC00A, "ECDHE-ECDSA-AES256-SHA"),
    (0xC013, "ECDHE-RSA-AES128-SHA"),
    (0xC014, "ECDHE-RSA-AES256-SHA"),
    (0xC023, "ECDHE-ECDSA-AES128-SHA256"),
    (0xC024, "ECDHE-ECDSA-AES256-SHA384"),
    (0xC027, "ECDHE-RSA-AES128-SHA256"),
    (0xC028, "ECDHE-RSA-AES256-SHA384"),
    (0x0033, "DHE-RSA-AES128-SHA"),
    (0x0039, "DHE-RSA-AES256-SHA"),
    (0x0067, "DHE-RSA-AES128-SHA256"),
    (0x006B, "DHE-RSA-AES256-SHA256"),
    (0x002F, "AES128-SHA"),
    (0x0035, "AES256-SHA"),
    (0x003C, "AES128-SHA256"),
    (0x003D, "AES256-SHA256"),
    (0x009C, "AES128-GCM-SHA256"),
    (0x009D, "AES256-GCM-SHA384"),
    (0xC0AC, "ECDHE-ECDSA-AES128-CCM"),
    (0xC0AD, "ECDHE-ECDSA-AES256-CCM"),
    (0xC0AE, "ECDHE-ECDSA-AES128-CCM8"),
    (0xC0AF, "ECDHE-ECDSA-AES256-CCM8"),
    (0xC09C, "AES128-CCM"),
    (0xC09D, "AES256-CCM"),
    (0xC09E, "DHE-RSA-AES128-CCM"),
    (0xC09F, "DHE-RSA-AES256-CCM"),
    (0xC05C, "ECDHE-ECDSA-ARIA128-GCM-SHA256"),
    (0xC05D, "ECDHE-ECDSA-ARIA256-GCM-SHA384"),
    (0xC060, "ECDHE-ARIA128-GCM-SHA256"),
    (0xC061, "ECDHE-ARIA256-GCM-SHA384"),
    (0xC052, "DHE-RSA-ARIA128-GCM-SHA256"),
    (0xC050, "ARIA128-GCM-SHA256"),
    (0xC072, "ECDHE-ECDSA-CAMELLIA128-SHA256"),
    (0xC076, "ECDHE-RSA-CAMELLIA128-SHA256"),
    (0x0045, "DHE-RSA-CAMELLIA128-SHA"),
    (0x0041, "CAMELLIA128-SHA"),
    (0x0084, "CAMELLIA256-SHA"),
    (0xC012, "ECDHE-RSA-DES-CBC3-SHA"),
    (0x000A, "DES-CBC3-SHA"),
    (0x00BA, "CAMELLIA128-SHA256"),
];

/// TLS 1.3's suites (all three are in both profiles).
pub const TLS13_SUITES: [u16; 3] = [0x1301, 0x1302, 0x1303];

/// Groups the profiles allow: x25519, secp256r1, secp384r1.
pub const PROFILE_GROUPS: [u16; 3] = [0x001D, 0x0017, 0x0018];

/// Groups outside them that OpenSSL would otherwise accept. `(code, name)`.
pub const OUTSIDE_GROUPS: [(u16, &str); 5] =
    [(0x0019, "secp521r1"), (0x001E, "X448"), (0x0100, "ffdhe2048"), (0x0101, "ffdhe3072"), (0x0102, "ffdhe4096")];

/// One ClientHello's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// `legacy_version` (the version itself before TLS 1.3).
    pub version: u16,
    /// The `supported_versions` extension; empty: not sent.
    pub versions: Vec<u16>,
    pub suites: Vec<u16>,
    pub groups: Vec<u16>,
}

/// A probe: what it offers, and what accepting it would mean.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub offers: &'static str,
    pub hello: Hello,
}

/// The probes of `profile`: every one must be refused.
pub fn probes(profile: TlsProfile) -> Vec<Probe> {
    let every12: Vec<u16> = INTERMEDIATE_SUITES.iter().chain(OUTSIDE_SUITES.iter()).map(|(c, _)| *c).collect();
    let groups12: Vec<u16> = PROFILE_GROUPS.to_vec();
    let mut p = vec![];
    match profile {
        TlsProfile::Intermediate => {
            p.push(Probe {
                offers: "TLS 1.1 and below",
                hello: Hello { version: TLS11, versions: vec![], suites: every12.clone(), groups: groups12.clone() },
            });
            p.push(Probe {
                offers: "TLS 1.2 suites outside the profile",
                hello: Hello {
                    version: TLS12,
                    versions: vec![],
                    suites: OUTSIDE_SUITES.iter().map(|(c, _)| *c).collect(),
                    groups: groups12,
                },
            });
        }
        TlsProfile::Modern => p.push(Probe {
            offers: "TLS 1.2 and below",
            hello: Hello { version: TLS12, versions: vec![], suites: every12, groups: groups12 },
        }),
    }
    p.push(Probe {
        offers: "key-exchange groups outside the profile",
        hello: Hello {
            version: TLS12,
            versions: vec![TLS13],
            suites: TLS13_SUITES.to_vec(),
            groups: OUTSIDE_GROUPS.iter().map(|(c, _)| *c).collect(),
        },
    });
    p
}

fn u16_list(out: &mut Vec<u8>, len_bytes: usize, items: &[u16]) {
    let n = items.len() * 2;
    if len_bytes == 1 {
        out.push(u8::try_from(n).unwrap_or(u8::MAX));
    } else {
        out.extend_from_slice(&u16::try_from(n).unwrap_or(u16::MAX).to_be_bytes());
    }
    for i in items {
        out.extend_from_slice(&i.to_be_bytes());
    }
}

fn extension(out: &mut Vec<u8>, kind: u16, body: &[u8]) {
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&u16::try_from(body.len()).unwrap_or(u16::MAX).to_be_bytes());
    out.extend_from_slice(body);
}

fn with_len(len_bytes: usize, body: &[u8]) -> Vec<u8> {
    let n = body.len();
    let mut out = match len_bytes {
        3 => vec![u8::try_from(n >> 16).unwrap_or(0), u8::try_from((n >> 8) & 0xFF).unwrap_or(0)],
        _ => vec![u8::try_from(n >> 8).unwrap_or(0)],
    };
    out.push(u8::try_from(n & 0xFF).unwrap_or(0));
    out.extend_from_slice(body);
    out
}

/// The signature schemes offered: ECDSA P-256/P-384, RSA-PSS and PKCS#1 with SHA-256/384/512.
const SIGNATURE_SCHEMES: [u16; 8] = [0x0403, 0x0503, 0x0804, 0x0805, 0x0806, 0x0401, 0x0501, 0x0601];

/// The ClientHello record for `hello` with SNI `host` and the client random `random`.
pub fn client_hello(hello: &Hello, host: &str, random: [u8; 32]) -> Vec<u8> {
    let mut ext = Vec::new();
    let name = host.as_bytes();
    let mut sni = vec![0u8]; // host_name
    sni.extend_from_slice(&with_len(2, name));
    extension(&mut ext, 0x0000, &with_len(2, &sni));
    let mut groups = Vec::new();
    u16_list(&mut groups, 2, &hello.groups);
    extension(&mut ext, 0x000A, &groups);
    extension(&mut ext, 0x000B, &[1, 0]); // ec_point_formats: uncompressed
    let mut sigs = Vec::new();
    u16_list(&mut sigs, 2, &SIGNATURE_SCHEMES);
    extension(&mut ext, 0x000D, &sigs);
    extension(&mut ext, 0xFF01, &[0]); // renegotiation_info, empty
    if !hello.versions.is_empty() {
        let mut v = Vec::new();
        u16_list(&mut v, 1, &hello.versions);
        extension(&mut ext, 0x002B, &v);
        extension(&mut ext, 0x0033, &[0, 0]); // key_share: none, so a known group draws a retry request
    }
    let mut body = Vec::new();
    body.extend_from_slice(&hello.version.to_be_bytes());
    body.extend_from_slice(&random);
    body.push(0); // no session id
    u16_list(&mut body, 2, &hello.suites);
    body.extend_from_slice(&[1, 0]); // compression: null
    body.extend_from_slice(&with_len(2, &ext));
    let mut handshake = vec![1u8]; // client_hello
    handshake.extend_from_slice(&with_len(3, &body));
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend_from_slice(&with_len(2, &handshake));
    record
}

/// The server's first answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// A ServerHello (or retry request): the server took the offer.
    Accepted { version: u16, suite: u16 },
    /// A TLS alert (its description code).
    Refused { alert: u8 },
    /// The connection closed with nothing read.
    Closed,
    /// Bytes that are neither.
    Garbled,
}

/// Read the server's first record(s): enough bytes for a ServerHello's header or an alert.
pub fn answer(bytes: &[u8]) -> Answer {
    match bytes {
        [] => Answer::Closed,
        [0x15, _, _, _, _, _level, alert, ..] => Answer::Refused { alert: *alert },
        [0x16, _, _, _, _, 0x02, _, _, _, v0, v1, rest @ ..] if rest.len() > 33 => {
            let sid = usize::from(rest[32]);
            let Some(suite) = rest.get(33 + sid..35 + sid) else { return Answer::Garbled };
            let suite = u16::from_be_bytes([suite[0], suite[1]]);
            let ext = rest.get(36 + sid..).unwrap_or_default();
            let version = selected_version(ext).unwrap_or(u16::from_be_bytes([*v0, *v1]));
            Answer::Accepted { version, suite }
        }
        _ => Answer::Garbled,
    }
}

/// The `supported_versions` extension of a ServerHello's extension block, when present.
fn selected_version(ext_block: &[u8]) -> Option<u16> {
    let total = usize::from(u16::from_be_bytes([*ext_block.first()?, *ext_block.get(1)?]));
    let mut at = ext_block.get(2..(2 + total).min(ext_block.len()))?;
    while at.len() >= 4 {
        let kind = u16::from_be_bytes([at[0], at[1]]);
        let len = usize::from(u16::from_be_bytes([at[2], at[3]]));
        let body = at.get(4..4 + len)?;
        if kind == 0x002B && len == 2 {
            return Some(u16::from_be_bytes([body[0], body[1]]));
        }
        at = &at[4 + len..];
    }
    None
}

fn version_name(v: u16) -> String {
    match v {
        0x0301 => "TLS 1.0".into(),
        TLS11 => "TLS 1.1".into(),
        TLS12 => "TLS 1.2".into(),
        TLS13 => "TLS 1.3".into(),
        other => format!("version 0x{other:04x}"),
    }
}

fn suite_name(code: u16) -> String {
    OUTSIDE_SUITES
        .iter()
        .chain(INTERMEDIATE_SUITES.iter())
        .find(|(c, _)| *c == code)
        .map_or_else(|| format!("suite 0x{code:04X}"), |(_, n)| (*n).to_owned())
}

/// What one host's answers to [`probes`] say: `None` when every probe was refused, else what was
/// accepted. A connection that failed outright is reported as such.
pub fn judge_host(results: &[(Probe, Result<Answer, String>)]) -> Option<String> {
    let wrong: Vec<String> = results
        .iter()
        .filter_map(|(p, a)| match a {
            Ok(Answer::Refused { .. } | Answer::Closed) => None,
            Ok(Answer::Accepted { version, suite }) => {
                Some(format!("offered {} it accepted {} with {}", p.offers, version_name(*version), suite_name(*suite)))
            }
            Ok(Answer::Garbled) => Some(format!("offered {} it answered something not TLS", p.offers)),
            Err(e) => Some(format!("offered {} the connection failed: {e}", p.offers)),
        })
        .collect();
    (!wrong.is_empty()).then(|| wrong.join("; "))
}

/// `doctor`'s `tls profile` check over every HTTPS host: `(host, verdict of judge_host)`.
pub fn check(profile: TlsProfile, hosts: &[(String, Option<String>)]) -> Check {
    let name = "tls profile";
    if hosts.is_empty() {
        return Check::new(name, Verdict::Warn, "no host serves HTTPS yet (run reconcile)");
    }
    let failed: Vec<String> = hosts.iter().filter_map(|(h, w)| w.as_ref().map(|w| format!("{h}: {w}"))).collect();
    let floor = match profile {
        TlsProfile::Intermediate => "TLS 1.2",
        TlsProfile::Modern => "TLS 1.3",
    };
    if failed.is_empty() {
        Check::new(
            name,
            Verdict::Pass,
            format!(
                "{} ({GUIDELINES}) on {} hosts: nothing below {floor}, no suite or group outside the profile accepted",
                profile.name(),
                hosts.len()
            ),
        )
    } else {
        Check::new(
            name,
            Verdict::Fail,
            format!(
                "outside the {} profile: {}; a template override or a hand edit weakens it: remove it and run reconcile",
                profile.name(),
                failed.join(" | ")
            ),
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn server_hello(version: u16, suite: u16, supported: Option<u16>) -> Vec<u8> {
        let mut body = version.to_be_bytes().to_vec();
        body.extend_from_slice(&[7; 32]);
        body.push(32);
        body.extend_from_slice(&[9; 32]);
        body.extend_from_slice(&suite.to_be_bytes());
        body.push(0);
        let mut ext = Vec::new();
        if let Some(v) = supported {
            ext.extend_from_slice(&[0x00, 0x2B, 0, 2]);
            ext.extend_from_slice(&v.to_be_bytes());
        }
        body.extend_from_slice(&with_len(2, &ext));
        let mut hs = vec![2u8];
        hs.extend_from_slice(&with_len(3, &body));
        let mut rec = vec![0x16, 0x03, 0x03];
        rec.extend_from_slice(&with_len(2, &hs));
        rec
    }

    #[test]
    fn a_client_hello_is_framed_as_tls_records_it() {
        let h = Hello { version: TLS12, versions: vec![TLS13], suites: vec![0x1301], groups: vec![0x001D] };
        let b = client_hello(&h, "broker.example.org", [0; 32]);
        assert_eq!(&b[..3], &[0x16, 0x03, 0x01]);
        assert_eq!(usize::from(u16::from_be_bytes([b[3], b[4]])), b.len() - 5);
        assert_eq!(b[5], 1);
        let hs_len = (usize::from(b[6]) << 16) | (usize::from(b[7]) << 8) | usize::from(b[8]);
        assert_eq!(hs_len, b.len() - 9);
        assert_eq!(&b[9..11], &[0x03, 0x03]);
        assert!(b.windows(18).any(|w| w == b"broker.example.org".as_slice()));
        // supported_versions with TLS 1.3 only
        assert!(b.windows(7).any(|w| w == [0x00, 0x2B, 0x00, 0x03, 0x02, 0x03, 0x04]));
        let old = client_hello(&Hello { versions: vec![], ..h }, "a.b", [0; 32]);
        assert!(!old.windows(5).any(|w| w == [0x00, 0x2B, 0x00, 0x03, 0x02]));
        assert!(!old.windows(4).any(|w| w == [0x00, 0x33, 0x00, 0x02]), "no key_share without TLS 1.3");
    }

    #[test]
    fn answers_are_read_as_accepted_refused_or_garbled() {
        assert_eq!(answer(&server_hello(TLS12, 0xC013, None)), Answer::Accepted { version: TLS12, suite: 0xC013 });
        assert_eq!(
            answer(&server_hello(TLS12, 0x1301, Some(TLS13))),
            Answer::Accepted { version: TLS13, suite: 0x1301 }
        );
        assert_eq!(answer(&[0x15, 0x03, 0x03, 0, 2, 2, 70]), Answer::Refused { alert: 70 });
        assert_eq!(answer(&[]), Answer::Closed);
        assert_eq!(answer(b"HTTP/1.1 400 Bad Request\r\n"), Answer::Garbled);
        assert_eq!(answer(&server_hello(TLS12, 0xC013, None)[..20]), Answer::Garbled);
    }

    #[test]
    fn each_profile_probes_its_floor_the_suites_and_the_groups() {
        let i = probes(TlsProfile::Intermediate);
        assert_eq!(i.len(), 3);
        assert_eq!(i[0].hello.version, TLS11);
        assert!(i[1].hello.suites.iter().all(|s| !INTERMEDIATE_SUITES.iter().any(|(c, _)| c == s)));
        assert!(i[2].hello.groups.iter().all(|g| !PROFILE_GROUPS.contains(g)));
        let m = probes(TlsProfile::Modern);
        assert_eq!(m.len(), 2);
        assert_eq!((m[0].hello.version, m[0].hello.versions.is_empty()), (TLS12, true));
        assert_eq!(i[0].hello.suites.len(), INTERMEDIATE_SUITES.len() + OUTSIDE_SUITES.len());
    }

    #[test]
    fn an_accepted_probe_fails_the_check_naming_host_and_suite() {
        let p = probes(TlsProfile::Intermediate);
        let good: Vec<_> = p.iter().map(|p| (p.clone(), Ok(Answer::Refused { alert: 40 }))).collect();
        assert_eq!(judge_host(&good), None);
        let mut bad = good.clone();
        bad[1].1 = Ok(Answer::Accepted { version: TLS12, suite: 0xC009 });
        let w = judge_host(&bad).unwrap();
        assert!(w.contains("ECDHE-ECDSA-AES128-SHA") && w.contains("TLS 1.2"), "{w}");
        let c = check(TlsProfile::Intermediate, &[("a.example".into(), None), ("b.example".into(), Some(w))]);
        assert_eq!(c.verdict, Verdict::Fail);
        assert!(c.detail.contains("b.example: offered TLS 1.2 suites outside"), "{}", c.detail);
        assert!(!c.detail.contains("a.example"), "{}", c.detail);
        let ok = check(TlsProfile::Modern, &[("a.example".into(), None)]);
        assert_eq!(ok.verdict, Verdict::Pass);
        assert!(ok.detail.contains("nothing below TLS 1.3"), "{}", ok.detail);
        assert_eq!(check(TlsProfile::Modern, &[]).verdict, Verdict::Warn);
        let failed = judge_host(&[(p[0].clone(), Err("refused".into()))]).unwrap();
        assert!(failed.contains("connection failed"), "{failed}");
    }
}
