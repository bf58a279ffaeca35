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
    /// The CA paused this account and host (Let's Encrypt, after repeated failed validations):
    /// the self-service URL that lifts it. No order until the operator has used it and cleared the
    /// pause (`reconcile --unpaused HOST`), or until `next_attempt` when the CA named a time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unpause_url: Option<String>,
    /// Whether the CA named when the pause ends (then `next_attempt` is that time).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pause_ends: bool,
    /// The CA (directory URL) the last failed order went to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<String>,
}

/// Why an order is not allowed now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotYet {
    pub next_attempt: i64,
    pub failures: u32,
    pub last_error_class: String,
    /// Paused by the CA: where to lift it (and `next_attempt` only counts when the CA named it).
    pub unpause_url: Option<String>,
}

impl std::fmt::Display for NotYet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.unpause_url {
            Some(url) => write!(
                f,
                "paused by the CA after {} failed order(s) (last {}): lift it at {url}, then run reconcile --unpaused <host>",
                self.failures, self.last_error_class
            ),
            None => write!(
                f,
                "{} failed order(s), last {}; next attempt at {}",
                self.failures, self.last_error_class, self.next_attempt
            ),
        }
    }
}

/// May this host get an order now?
pub fn may_order(ledger: Option<&Ledger>, now: i64) -> Result<(), NotYet> {
    match ledger {
        Some(l) if now < l.next_attempt || (l.unpause_url.is_some() && !l.pause_ends) => Err(NotYet {
            next_attempt: l.next_attempt,
            failures: l.failures,
            last_error_class: l.last_error_class.clone(),
            unpause_url: l.unpause_url.clone(),
        }),
        _ => Ok(()),
    }
}

/// The ledger after an order to `ca` failed: failures count per CA (another CA's failures start
/// the count afresh, backoff included), and a pause keeps its unpause URL.
pub(crate) fn failed_order(
    ledger: Option<&Ledger>,
    now: i64,
    class: &str,
    retry_after: Option<i64>,
    ca: &str,
    unpause_url: Option<&str>,
) -> Ledger {
    let same_ca = ledger.filter(|l| l.ca.as_deref() == Some(ca));
    let entry = Ledger { ca: Some(ca.to_owned()), ..record_failure(same_ca, now, class, retry_after) };
    match unpause_url {
        Some(url) => paused(entry, url.to_owned(), retry_after),
        None => entry,
    }
}

/// A failed order that paused the account for this host: keep the unpause URL; the pause ends at
/// the CA's retry time if it named one, else when the operator clears it.
pub(crate) fn paused(mut ledger: Ledger, unpause_url: String, retry_after: Option<i64>) -> Ledger {
    ledger.unpause_url = Some(unpause_url);
    ledger.pause_ends = retry_after.is_some();
    ledger
}

/// The operator lifted the pause at the CA: the host may be ordered now.
pub(crate) fn unpaused(mut ledger: Ledger, now: i64) -> Ledger {
    ledger.unpause_url = None;
    ledger.pause_ends = false;
    ledger.next_attempt = now;
    ledger
}

/// Record a failed order: exponential backoff from one hour (never sooner: Let's Encrypt allows 5
/// failed validations per host per hour, and every CI deploy runs `reconcile`), capped at
/// `MAX_BACKOFF`, and never before the CA's `Retry-After`.
pub fn record_failure(ledger: Option<&Ledger>, now: i64, class: &str, retry_after: Option<i64>) -> Ledger {
    let failures = ledger.map_or(0, |l| l.failures).saturating_add(1);
    let backoff = HOUR.saturating_mul(1_i64 << (failures - 1).min(20)).min(MAX_BACKOFF);
    let next = (now + backoff).max(retry_after.unwrap_or(0));
    Ledger {
        failures,
        last_failure: now,
        next_attempt: next,
        last_error_class: class.to_owned(),
        unpause_url: None,
        pause_ends: false,
        ca: None,
    }
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
    /// Held: the CA paused ordering for this host (the order that got the pause is `Failed`); the
    /// ledger holds the URL that lifts it, and `doctor` fails until the operator clears it.
    Paused,
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
            CertState::Paused => "paused",
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

/// The next step for one host's certificate in a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// Keep serving what is served: not due yet.
    Keep(Renewal),
    /// Its DNS does not point here: no order (parked), re-checked next run.
    Park(String),
    /// A recent failed order: none before the ledger allows one.
    BackOff(NotYet),
    /// What an order needs is unknown (this machine's public IP, a resolver).
    Fail(String),
    /// Order, once nginx is proven to serve the challenge path.
    Order,
}

/// Is a certificate with this renewal time (`None`: nothing usable served) due at `now`?
pub(crate) fn is_due(renewal: Option<&Renewal>, now: i64) -> bool {
    renewal.is_none_or(|r| r.at <= now)
}

/// Decide one host's step, in the order of spec §7: not due → keep; then DNS (asked through
/// `dns` only for a due host: this machine's address and the host's A record) → park or fail;
/// then the failure ledger → back off; else order.
pub(crate) fn next_step(
    renewal: Option<&Renewal>,
    ledger: Option<&Ledger>,
    now: i64,
    dns: impl FnOnce() -> Result<DnsVerdict, String>,
) -> Step {
    if let Some(r) = renewal.filter(|r| r.at > now) {
        return Step::Keep(r.clone());
    }
    match dns() {
        Err(e) => return Step::Fail(e),
        Ok(DnsVerdict::DnsNotReady { expected, found, detail }) => {
            return Step::Park(format!("{detail}: expected {expected}, found [{}]", found.join(", ")));
        }
        Ok(DnsVerdict::Ready) => {}
    }
    match may_order(ledger, now) {
        Err(not_yet) => Step::BackOff(not_yet),
        Ok(()) => Step::Order,
    }
}

/// Failed orders in a row with one CA after which a host is ordered from the next CA.
pub(crate) const FAILOVER_AFTER: u32 = 3;

/// The CAs to try for a host, as indexes into `cas` (the configured directories, primary first):
/// the one that issued its certificate — renewals stay with it — else the primary; the next one
/// first when that CA keeps failing for this host ([`FAILOVER_AFTER`]); then the rest in order.
pub(crate) fn ca_order(cas: &[&str], issuer: Option<&str>, ledger: Option<&Ledger>) -> Vec<usize> {
    let n = cas.len().max(1);
    let mut start = issuer.and_then(|i| cas.iter().position(|c| *c == i)).unwrap_or(0);
    if let Some(l) = ledger
        && l.failures >= FAILOVER_AFTER
        && l.ca.as_deref() == cas.get(start).copied()
    {
        start = (start + 1) % n;
    }
    (0..n).map(|k| (start + k) % n).collect()
}

/// A failure that says the CA cannot be reached or is broken: the next CA is tried in the same
/// run (a validation failure is not: every CA would fail it the same way).
pub(crate) fn moves_on(class: &str) -> bool {
    matches!(class, "connection" | "timeout" | "serverInternal" | "unreachable")
}

/// Order failures worth one immediate retry in the same run; a validation failure is not (it
/// would burn the CA's failed-validation limit). `badNonce` is: instant-acme retries each request
/// on it (three attempts, instant-acme 0.8.5 `Client::post`), and a CA that rejects nonces at
/// random (Pebble's default: 5 %) can still exhaust them; it is never the host's fault, and a
/// failed order would otherwise sit out the ledger's hour.
pub(crate) fn is_transient(class: &str) -> bool {
    matches!(class, "connection" | "timeout" | "serverInternal" | "badNonce")
}

/// The CA's renewal window for one certificate, cached, and when to ask again.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub(crate) struct AriEntry {
    pub serial: String,
    pub window: Option<(i64, i64)>,
    pub next_check: i64,
}

/// What the CA said when asked for a certificate's renewal information.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AriAnswer {
    /// A window, and the CA's `Retry-After` in seconds.
    Window((i64, i64), i64),
    /// The CA offers no ARI.
    NotOffered,
    /// The CA could not be asked (unreachable, an error).
    Unavailable,
}

/// The cache entry for an answer at `now`: ask again at the CA's `Retry-After` (but within 11–12
/// hours), after a day when it offers no ARI, after an hour when it could not be asked.
pub(crate) fn ari_entry(serial: &str, answer: AriAnswer, now: i64) -> AriEntry {
    let (window, next_check) = match answer {
        // At least twice a day (a window can move, e.g. on revocation), spread over the hour
        // before by the serial so a fleet does not ask at once.
        AriAnswer::Window(w, retry) => {
            let cap = 12 * HOUR - (serial_jitter(serial) * HOUR as f64) as i64;
            (Some(w), now + retry.min(cap))
        }
        AriAnswer::NotOffered => (None, now + DAY),
        AriAnswer::Unavailable => (None, now + HOUR),
    };
    AriEntry { serial: serial.to_owned(), window, next_check }
}

/// The cached entry of the certificate with `serial`, if the cache holds one for it.
pub(crate) fn cached<'a>(entry: Option<&'a AriEntry>, serial: &str) -> Option<&'a AriEntry> {
    entry.filter(|e| e.serial == serial)
}

/// The cached window when it may still be used at `now` without asking the CA (a run asks again
/// once `next_check` passes; the daemon's schedule, which never asks, uses [`cached`]).
pub(crate) fn fresh<'a>(entry: Option<&'a AriEntry>, serial: &str, now: i64) -> Option<&'a AriEntry> {
    cached(entry, serial).filter(|e| now < e.next_check)
}

/// Is a certificate overdue at `now`? Past its renewal time by more than a fifteenth of its
/// lifetime (6 days of 90, 3 of 45, ~10 h of 6), or under a tenth of its lifetime left.
pub(crate) fn overdue(not_before: i64, not_after: i64, renew_at: i64, now: i64) -> bool {
    let lifetime = (not_after - not_before).max(1);
    now > renew_at + lifetime / 15 || not_after - now < lifetime / 10
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
    /// `not_after` and `renew_at` in UTC RFC 3339, for people reading the JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after_rfc3339: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew_at_rfc3339: Option<String>,
    /// When the cached ARI window should be asked for again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ari_next_check: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ledger: Option<Ledger>,
    /// The CA (directory URL) that issued the certificate in service, when hostd ordered it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<String>,
    /// Past its renewal time by more than the grace, or under a tenth of its lifetime left: no CA
    /// e-mails about expiry any more, so this is the alarm.
    #[serde(default)]
    pub overdue: bool,
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
            (CertState::Paused, "paused", false),
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

    #[test]
    fn next_step_table() {
        let due = Renewal { at: T0, why: "1/3".into() };
        let later = Renewal { at: T0 + DAY, why: "1/3".into() };
        let failed = record_failure(None, T0 - 60, "unauthorized", None);
        let ready = || Ok(DnsVerdict::Ready);
        let parked = || {
            Ok(DnsVerdict::DnsNotReady { expected: "127.0.0.1".into(), found: vec![], detail: "no A record".into() })
        };
        let no_ip = || Err("this machine's public IPv4 is unknown".to_owned());
        let asked = std::cell::Cell::new(0);
        let counted = || {
            asked.set(asked.get() + 1);
            Ok(DnsVerdict::Ready)
        };
        assert_eq!(next_step(Some(&later), None, T0, counted), Step::Keep(later.clone()));
        assert_eq!(asked.get(), 0, "DNS is not asked for a host that is not due");
        assert_eq!(next_step(Some(&due), None, T0, ready), Step::Order);
        assert_eq!(next_step(None, None, T0, ready), Step::Order, "nothing served: order");
        assert!(matches!(next_step(None, None, T0, parked), Step::Park(d) if d.contains("no A record")));
        assert!(matches!(next_step(None, None, T0, no_ip), Step::Fail(d) if d.contains("public IPv4")));
        assert!(matches!(next_step(None, Some(&failed), T0, ready), Step::BackOff(n) if n.failures == 1));
        assert!(
            matches!(next_step(None, Some(&failed), T0, parked), Step::Park(_)),
            "a parked host says so even while backing off"
        );
        assert_eq!(next_step(None, Some(&failed), T0 + HOUR, ready), Step::Order, "the hour passed");
        assert!(is_due(None, T0) && is_due(Some(&due), T0) && !is_due(Some(&later), T0));
    }

    #[test]
    fn transient_failures_are_retried_once_validation_failures_never() {
        for class in ["connection", "timeout", "serverInternal", "badNonce"] {
            assert!(is_transient(class), "{class}");
        }
        for class in ["unauthorized", "rateLimited", "dns", "caa", ""] {
            assert!(!is_transient(class), "{class}");
        }
    }

    #[test]
    fn ari_cache_rules() {
        let w = ari_entry("01", AriAnswer::Window((T0 + DAY, T0 + 2 * DAY), 6 * HOUR), T0);
        assert_eq!((w.window, w.next_check), (Some((T0 + DAY, T0 + 2 * DAY)), T0 + 6 * HOUR));
        for serial in ["01", "02", "ff:ee"] {
            let late = ari_entry(serial, AriAnswer::Window((T0 + DAY, T0 + 2 * DAY), 3 * DAY), T0);
            let after = late.next_check - T0;
            assert!((11 * HOUR..=12 * HOUR).contains(&after), "{serial}: asked again after {after} s");
        }
        assert_eq!(ari_entry("01", AriAnswer::NotOffered, T0).next_check, T0 + DAY);
        assert_eq!(ari_entry("01", AriAnswer::Unavailable, T0).next_check, T0 + HOUR);
        assert!(fresh(Some(&w), "01", T0 + 6 * HOUR - 1).is_some());
        assert!(fresh(Some(&w), "01", T0 + 6 * HOUR).is_none(), "stale: a run asks again");
        assert!(cached(Some(&w), "01").is_some(), "the schedule still shows it");
        assert!(cached(Some(&w), "02").is_none() && fresh(Some(&w), "02", T0).is_none(), "another certificate");
    }

    #[test]
    fn overdue_past_the_grace_or_under_a_tenth_left() {
        for days in [6, 45, 64, 90] {
            let (nb, na) = (T0, T0 + days * DAY);
            let lifetime = na - nb;
            let renew = renewal_time(&cert(days, None), T0, 0.5).at;
            assert!(!overdue(nb, na, renew, renew), "{days} d: due is not overdue");
            assert!(!overdue(nb, na, renew, renew + lifetime / 15), "{days} d: within the grace");
            assert!(overdue(nb, na, renew, renew + lifetime / 15 + 1), "{days} d: past the grace");
            // An ARI window late in the lifetime: a tenth left is overdue whatever the window says.
            assert!(overdue(nb, na, na, na - lifetime / 10 + 1), "{days} d: under a tenth left");
            assert!(!overdue(nb, na, na, na - lifetime / 10), "{days} d: exactly a tenth left");
        }
    }

    #[test]
    fn a_paused_host_waits_for_the_operator_or_the_cas_time() {
        let url = "https://portal.letsencrypt.org/sfe/v1/unpause?jwt=abc".to_owned();
        let failed = record_failure(None, T0, "rateLimited", None);
        let held = paused(failed.clone(), url.clone(), None);
        for later in [HOUR, DAY, 30 * DAY] {
            let e = may_order(Some(&held), T0 + later).expect_err("paused until cleared");
            assert_eq!(e.unpause_url.as_deref(), Some(url.as_str()));
        }
        assert!(may_order(Some(&held), T0).expect_err("paused").to_string().contains(&url));
        assert_eq!(may_order(Some(&unpaused(held, T0 + DAY)), T0 + DAY), Ok(()), "cleared by the operator");
        let timed = paused(record_failure(None, T0, "rateLimited", Some(T0 + DAY)), url, Some(T0 + DAY));
        assert!(may_order(Some(&timed), T0 + DAY - 1).is_err());
        assert_eq!(may_order(Some(&timed), T0 + DAY), Ok(()), "the CA's time passed");
        assert!(!may_order(Some(&failed), T0).expect_err("backing off").to_string().contains("paused"));
    }

    #[test]
    fn the_ca_that_issued_keeps_the_host_until_it_keeps_failing() {
        let (a, b) = ("https://primary.example/dir", "https://fallback.example/dir");
        let cas = [a, b];
        assert_eq!(ca_order(&cas, None, None), [0, 1], "a new host: primary first");
        assert_eq!(ca_order(&cas, Some(b), None), [1, 0], "renewals stay with the issuing CA");
        assert_eq!(ca_order(&cas, Some("https://gone.example/dir"), None), [0, 1], "an issuer no longer configured");
        let failing = |ca: &str, failures| Ledger { failures, ca: Some(ca.into()), ..Ledger::default() };
        assert_eq!(ca_order(&cas, Some(b), Some(&failing(b, 2))), [1, 0], "not yet");
        assert_eq!(ca_order(&cas, Some(b), Some(&failing(b, 3))), [0, 1], "the issuing CA keeps failing: next");
        assert_eq!(ca_order(&cas, None, Some(&failing(b, 5))), [0, 1], "failures at another CA do not count");
        assert_eq!(ca_order(&[a], Some(a), Some(&failing(a, 9))), [0], "one CA: nowhere else to go");
        assert!(
            moves_on("connection") && moves_on("unreachable") && !moves_on("unauthorized") && !moves_on("rateLimited")
        );
    }

    #[test]
    fn failures_count_per_ca_and_a_pause_is_kept() {
        let (a, b) = ("https://primary.example/dir", "https://fallback.example/dir");
        let one = failed_order(None, T0, "connection", None, a, None);
        assert_eq!((one.failures, one.ca.as_deref(), one.next_attempt - T0), (1, Some(a), HOUR));
        let two = failed_order(Some(&one), T0, "connection", None, a, None);
        assert_eq!(two.failures, 2, "the same CA keeps counting");
        let other = failed_order(Some(&two), T0, "unauthorized", None, b, None);
        assert_eq!((other.failures, other.ca.as_deref(), other.next_attempt - T0), (1, Some(b), HOUR), "afresh");
        let held = failed_order(None, T0, "rateLimited", None, a, Some("https://ca.example/unpause?j=1"));
        assert!(may_order(Some(&held), T0 + 30 * DAY).is_err(), "paused until cleared");
    }
}
