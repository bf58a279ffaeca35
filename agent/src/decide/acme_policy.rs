//! Certificate decisions, pure (spec §7): when a certificate is due for renewal (ARI window when
//! offered, else a fraction of its lifetime), whether a host may get an order now (failure ledger
//! with backoff, at most one failed order per host per hour, `Retry-After` honoured), and whether
//! its DNS points here (otherwise the host is parked). Time is unix seconds, passed in.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

const DAY: i64 = 86_400;
const HOUR: i64 = 3_600;
/// Longest backoff between failed orders for one host.
pub(crate) const MAX_BACKOFF: i64 = 7 * DAY;

/// What we know about a certificate in service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cert {
    pub not_before: i64,
    pub not_after: i64,
    /// The CA's suggested renewal window (RFC 9773), when it offers ARI.
    pub ari: Option<(i64, i64)>,
}

/// When a certificate should be renewed, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Renewal {
    pub at: i64,
    pub why: String,
}

/// The renewal time of `cert`; `jitter` in [0, 1) picks the point inside an ARI window (RFC 9773
/// asks clients to choose uniformly within it).
pub fn renewal_time(cert: &Cert, now: i64, jitter: f64) -> Renewal {
    let lifetime = (cert.not_after - cert.not_before).max(1);
    let remaining = cert.not_after - now;
    let short = lifetime <= 10 * DAY;
    if let Some((start, end)) = cert.ari {
        // Once less than 1/20 of the lifetime is left the CA's window no longer counts: renew now.
        if remaining >= lifetime / 20 && start <= end {
            let span = (end - start) as f64;
            let at = start + (span * jitter.clamp(0.0, 0.999_999)) as i64;
            return Renewal { at, why: format!("ARI window {start}..{end}") };
        }
        if remaining < lifetime / 20 {
            return Renewal {
                at: now.min(cert.not_after),
                why: "less than 1/20 of the lifetime left: ARI ignored".into(),
            };
        }
    }
    let (num, den, label) = if short { (1, 2, "1/2") } else { (1, 3, "1/3") };
    let at = cert.not_after - lifetime * num / den;
    let kind = if short { "short-lived (<= 10 days)" } else { "lifetime" };
    Renewal { at, why: format!("{label} of the {kind} certificate left") }
}

/// The point inside an ARI window for one certificate, in [0, 1): derived from its serial, so every
/// run and the daemon agree on the same renewal time while a fleet still spreads across the window.
pub(crate) fn serial_jitter(serial: &str) -> f64 {
    use sha2::Digest;
    let d = sha2::Sha256::digest(serial.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

/// Per host: failed orders and when the next one is allowed (persisted, shared by every run).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    pub failures: u32,
    pub last_failure: i64,
    pub next_attempt: i64,
    pub last_error_class: String,
}

/// Why an order is not allowed now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotYet {
    pub next_attempt: i64,
    pub failures: u32,
    pub last_error_class: String,
}

/// May this host get an order now?
pub fn may_order(ledger: Option<&Ledger>, now: i64) -> Result<(), NotYet> {
    match ledger {
        Some(l) if now < l.next_attempt => Err(NotYet {
            next_attempt: l.next_attempt,
            failures: l.failures,
            last_error_class: l.last_error_class.clone(),
        }),
        _ => Ok(()),
    }
}

/// Record a failed order: exponential backoff from one hour (never sooner: Let's Encrypt allows 5
/// failed validations per host per hour, and every CI deploy runs `reconcile`), capped at
/// `MAX_BACKOFF`, and never before the CA's `Retry-After`.
pub fn record_failure(ledger: Option<&Ledger>, now: i64, class: &str, retry_after: Option<i64>) -> Ledger {
    let failures = ledger.map_or(0, |l| l.failures).saturating_add(1);
    let backoff = HOUR.saturating_mul(1_i64 << (failures - 1).min(20)).min(MAX_BACKOFF);
    let next = (now + backoff).max(retry_after.unwrap_or(0));
    Ledger { failures, last_failure: now, next_attempt: next, last_error_class: class.to_owned() }
}

/// Whether a host's public DNS points at this machine.
/// What one host's certificate came to in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CertState {
    /// Served and not yet due.
    Https,
    /// Ordered, installed and served in this run.
    Issued,
    /// Its DNS does not point here: no order (parked).
    DnsNotReady,
    /// A recent failed order: no order until the ledger allows one.
    Backoff,
    /// The order failed (or its preconditions could not be read).
    Failed,
    /// nginx did not serve the challenge path to ourselves: no order.
    SelfCheckFailed,
}

impl CertState {
    /// The run failed for this host (it keeps whatever it served before).
    pub(crate) fn is_failure(self) -> bool {
        matches!(self, CertState::Failed | CertState::SelfCheckFailed)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CertState::Https => "https",
            CertState::Issued => "issued",
            CertState::DnsNotReady => "dns_not_ready",
            CertState::Backoff => "backoff",
            CertState::Failed => "failed",
            CertState::SelfCheckFailed => "self_check_failed",
        }
    }
}

impl std::fmt::Display for CertState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub(crate) enum DnsVerdict {
    Ready,
    /// `dns_not_ready`: no order; both addresses in the report; cheap re-check next run.
    DnsNotReady {
        expected: String,
        found: Vec<String>,
        detail: String,
    },
}

/// The outcome of one A lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Lookup {
    Addresses(Vec<Ipv4Addr>),
    NxDomain,
    Failed(String),
}

pub(crate) fn dns_verdict(public_ip: Ipv4Addr, lookup: &Lookup) -> DnsVerdict {
    let park = |found: Vec<String>, detail: &str| DnsVerdict::DnsNotReady {
        expected: public_ip.to_string(),
        found,
        detail: detail.to_owned(),
    };
    match lookup {
        Lookup::Addresses(a) if a.contains(&public_ip) && a.len() == 1 => DnsVerdict::Ready,
        Lookup::Addresses(a) if a.is_empty() => park(vec![], "no A record"),
        Lookup::Addresses(a) if a.contains(&public_ip) => park(
            a.iter().map(ToString::to_string).collect(),
            "A records include other addresses: validation could hit another machine",
        ),
        Lookup::Addresses(a) => park(a.iter().map(ToString::to_string).collect(), "A record points elsewhere"),
        Lookup::NxDomain => park(vec![], "NXDOMAIN"),
        Lookup::Failed(e) => park(vec![], &format!("lookup failed: {e}")),
    }
}

/// One host's certificate as the daemon and `status` see it, from files only (no network).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostSchedule {
    pub host: String,
    /// `https` or `http_placeholder`.
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_after: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub renew_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub renew_why: Option<String>,
    /// When the cached ARI window should be asked for again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ari_next_check: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ledger: Option<Ledger>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cert_states_keep_their_names_and_say_what_fails() {
        let all = [
            (CertState::Https, "https", false),
            (CertState::Issued, "issued", false),
            (CertState::DnsNotReady, "dns_not_ready", false),
            (CertState::Backoff, "backoff", false),
            (CertState::Failed, "failed", true),
            (CertState::SelfCheckFailed, "self_check_failed", true),
        ];
        for (state, name, fails) in all {
            assert_eq!(serde_json::to_value(state).ok(), Some(serde_json::Value::from(name)), "the report's spelling");
            assert_eq!((state.to_string().as_str(), state.is_failure()), (name, fails));
        }
    }

    #[test]
    fn serial_jitter_is_stable_spread_and_in_range() {
        let a = serial_jitter("01:02:03");
        assert_eq!(a, serial_jitter("01:02:03"));
        let all: Vec<f64> = (0..200).map(|i| serial_jitter(&format!("{i:x}"))).collect();
        assert!(all.iter().all(|j| (0.0..1.0).contains(j)));
        assert!(all.iter().any(|j| *j < 0.2) && all.iter().any(|j| *j > 0.8), "spread over the window");
    }

    const T0: i64 = 1_800_000_000;

    fn cert(days: i64, ari: Option<(i64, i64)>) -> Cert {
        Cert { not_before: T0, not_after: T0 + days * DAY, ari }
    }

    #[test]
    fn renewal_table() {
        // (lifetime days, ARI window, now offset, jitter, expected renewal offset from T0, reason fragment)
        type Row = (i64, Option<(i64, i64)>, i64, f64, i64, &'static str);
        let table: &[Row] = &[
            (90, None, 0, 0.5, 60 * DAY, "1/3 of the lifetime"),
            (64, None, 0, 0.5, 64 * DAY - 64 * DAY / 3, "1/3"),
            (45, None, 0, 0.5, 30 * DAY, "1/3"),
            (6, None, 0, 0.5, 3 * DAY, "1/2 of the short-lived"),
            (10, None, 0, 0.5, 5 * DAY, "1/2"),
            (11, None, 0, 0.5, 11 * DAY - 11 * DAY / 3, "1/3"),
            (90, Some((T0 + 40 * DAY, T0 + 42 * DAY)), 0, 0.0, 40 * DAY, "ARI window"),
            (90, Some((T0 + 40 * DAY, T0 + 42 * DAY)), 0, 0.5, 41 * DAY, "ARI window"),
            // A revocation-driven ARI window in the past: due immediately.
            (90, Some((T0 + DAY, T0 + 2 * DAY)), 10 * DAY, 0.5, DAY + DAY / 2, "ARI window"),
            // Under 1/20 (4.5 days) left: ARI ignored, due now.
            (90, Some((T0 + 95 * DAY, T0 + 96 * DAY)), 86 * DAY, 0.5, 86 * DAY, "ARI ignored"),
        ];
        for &(days, ari, now, jitter, want, why) in table {
            let r = renewal_time(&cert(days, ari), T0 + now, jitter);
            assert_eq!(r.at - T0, want, "{days} days, ari {ari:?}: {}", r.why);
            assert!(r.why.contains(why), "{}", r.why);
        }
        let due = |now: i64| renewal_time(&cert(90, None), T0 + now, 0.5).at <= T0 + now;
        assert!(!due(59 * DAY) && due(60 * DAY));
        assert!(due(100 * DAY), "expired is due");
    }

    #[test]
    fn backoff_is_at_least_an_hour_doubles_caps_and_honours_retry_after() {
        let l1 = record_failure(None, T0, "unauthorized", None);
        assert_eq!((l1.failures, l1.next_attempt - T0), (1, HOUR));
        assert!(may_order(Some(&l1), T0 + HOUR - 1).is_err());
        assert!(may_order(Some(&l1), T0 + HOUR).is_ok());
        let l2 = record_failure(Some(&l1), T0 + HOUR, "connection", None);
        assert_eq!(l2.next_attempt - (T0 + HOUR), 2 * HOUR);
        let mut l = l2;
        for _ in 0..40 {
            l = record_failure(Some(&l), T0, "x", None);
        }
        assert_eq!(l.next_attempt - T0, MAX_BACKOFF, "capped");
        let rl = record_failure(None, T0, "rateLimited", Some(T0 + 5 * DAY));
        assert_eq!(rl.next_attempt, T0 + 5 * DAY, "Retry-After wins when later");
        assert_eq!(may_order(None, T0), Ok(()));
        // Ten back-to-back runs within the hour: only the first may order.
        let mut ledger: Option<Ledger> = None;
        let mut orders = 0;
        for run in 0..10 {
            let now = T0 + run * 60;
            if may_order(ledger.as_ref(), now).is_ok() {
                orders += 1;
                ledger = Some(record_failure(ledger.as_ref(), now, "unauthorized", None));
            }
        }
        assert_eq!(orders, 1);
    }

    #[test]
    fn dns_parks_unless_the_only_a_record_is_ours() {
        let me: Ipv4Addr = "127.0.0.1".parse().expect("ip");
        let other: Ipv4Addr = "127.0.0.9".parse().expect("ip");
        assert_eq!(dns_verdict(me, &Lookup::Addresses(vec![me])), DnsVerdict::Ready);
        for (lookup, detail) in [
            (Lookup::Addresses(vec![other]), "points elsewhere"),
            (Lookup::Addresses(vec![me, other]), "other addresses"),
            (Lookup::Addresses(vec![]), "no A record"),
            (Lookup::NxDomain, "NXDOMAIN"),
            (Lookup::Failed("timeout".into()), "timeout"),
        ] {
            match dns_verdict(me, &lookup) {
                DnsVerdict::DnsNotReady { expected, detail: d, .. } => {
                    assert_eq!(expected, "127.0.0.1");
                    assert!(d.contains(detail), "{d}");
                }
                DnsVerdict::Ready => panic!("{lookup:?} must park"),
            }
        }
    }
}
