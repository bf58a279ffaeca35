//! The certificate step of a converge (spec §7): for every public host, keep serving a usable
//! certificate, or — when none is usable or renewal is due — check DNS, respect the failure
//! ledger, prove the challenge path through nginx, order, and install. Decisions come from
//! `acme_policy`; this module only gathers facts and carries them out.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use anyhow::Context;
use serde::Serialize;

use crate::decide::acme_policy::{self, Cert, CertState, DnsVerdict, Ledger};
use crate::host::acme::{self, AcmeConfig};

use crate::decide::paths;
use crate::decide::render::TlsState;
use crate::decide::settings::Settings;
use crate::host::certs::{self, CertInfo};
use crate::host::fs::Root;
use crate::host::{dns, health};

const LEDGER_FILE: &str = "/var/lib/agentkeys-hostd/acme/ledger.json";
const ARI_FILE: &str = "/var/lib/agentkeys-hostd/acme/renewal-info.json";

/// The CA's renewal window for one certificate, and when to ask again (its Retry-After).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, Serialize)]
struct AriEntry {
    serial: String,
    window: Option<(i64, i64)>,
    next_check: i64,
}

async fn ensure_account<'a>(
    slot: &'a mut Option<acme::Account>,
    root: &Root,
    settings: &Settings,
) -> anyhow::Result<&'a acme::Account> {
    if slot.is_none() {
        let a = &settings.acme;
        let cfg = AcmeConfig {
            directory_url: a.directory_url.clone(),
            ca_bundle: a.ca_bundle.as_ref().map(|p| root.path(p)),
            contact_email: a.contact_email.clone(),
        };
        *slot = Some(acme::account(root, &cfg).await?);
    }
    Ok(slot.as_ref().expect("set above"))
}

/// The ARI window of `cert`, from the cache while fresh, else asked from the CA (a CA without ARI,
/// or one that cannot be reached, leaves the lifetime rule in charge).
async fn ari_window(
    cache: &mut BTreeMap<String, AriEntry>,
    account: &mut Option<acme::Account>,
    root: &Root,
    settings: &Settings,
    host: &str,
    cert: &CertInfo,
    now: i64,
) -> Option<(i64, i64)> {
    if let Some(e) = cache.get(host).filter(|e| e.serial == cert.serial && now < e.next_check) {
        return e.window;
    }
    let asked = match ensure_account(account, root, settings).await {
        Ok(acct) => acme::renewal_window(acct, &cert.leaf_der).await,
        Err(e) => Err(e),
    };
    let (window, next_check) = match asked {
        Ok(Some((w, retry))) => (Some(w), now + retry),
        Ok(None) => (None, now + 86_400),
        Err(e) => {
            tracing::warn!(host, error = %format!("{e:#}"), "renewal information unavailable; using the lifetime rule");
            (None, now + 3_600)
        }
    };
    cache.insert(host.to_owned(), AriEntry { serial: cert.serial.clone(), window, next_check });
    window
}

/// What happened to one host's certificate in this run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostOutcome {
    pub state: CertState,
    /// The serial of the certificate issued in this run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_after: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub renew_at: Option<i64>,
    pub detail: String,
}

impl HostOutcome {
    fn new(state: CertState, detail: impl Into<String>) -> Self {
        Self { state, serial: None, not_after: None, renew_at: None, detail: detail.into() }
    }

    /// Whole days until the certificate expires (negative when expired).
    pub(crate) fn days_left(&self, now: i64) -> Option<i64> {
        self.not_after.map(|t| (t - now).div_euclid(86_400))
    }
}

pub(crate) fn read_ledger(root: &Root) -> anyhow::Result<BTreeMap<String, Ledger>> {
    match root.read_string(LEDGER_FILE)? {
        Some(t) => serde_json::from_str(&t).with_context(|| format!("{LEDGER_FILE} is unreadable; move it aside")),
        None => Ok(BTreeMap::new()),
    }
}

fn write_ledger(root: &Root, ledger: &BTreeMap<String, Ledger>) -> anyhow::Result<()> {
    std::fs::create_dir_all(root.path(acme::ACCOUNT_DIR)).context("failed to create the ACME state directory")?;
    root.set_meta(acme::ACCOUNT_DIR, 0o700, 0, 0)?;
    root.write_atomic(LEDGER_FILE, (serde_json::to_string_pretty(ledger)? + "\n").as_bytes(), 0o600, 0, 0)
}

pub(crate) use crate::decide::acme_policy::HostSchedule;

/// Every host's renewal time and why (ARI from the cache, else the lifetime rule), with its ledger.
pub fn schedule(root: &Root, tls: &BTreeMap<String, TlsState>, now: i64) -> anyhow::Result<Vec<HostSchedule>> {
    let ledger = read_ledger(root)?;
    let ari: BTreeMap<String, AriEntry> = match root.read_string(ARI_FILE)? {
        Some(t) => serde_json::from_str(&t).unwrap_or_default(),
        None => BTreeMap::new(),
    };
    Ok(tls
        .iter()
        .map(|(host, state)| {
            let current = in_service(root, state);
            let cached = current.as_ref().and_then(|c| ari.get(host).filter(|e| e.serial == c.serial));
            let renewal = current.as_ref().map(|c| {
                let cert =
                    Cert { not_before: c.not_before, not_after: c.not_after, ari: cached.and_then(|e| e.window) };
                acme_policy::renewal_time(&cert, now, acme_policy::serial_jitter(&c.serial))
            });
            HostSchedule {
                host: host.clone(),
                state: state.name().to_owned(),
                not_after: current.as_ref().map(|c| c.not_after),
                renew_at: renewal.as_ref().map(|r| r.at),
                renew_why: renewal.map(|r| r.why),
                ari_next_check: cached.map(|e| e.next_check),
                ledger: ledger.get(host).cloned(),
            }
        })
        .collect())
}

/// Fetch a probe token through nginx on port 80 with the host's `Host` header (each try a short
/// loopback request; the waits between them yield to the runtime).
async fn self_check(root: &Root, host: &str) -> Result<(), String> {
    let token = format!("hostd-probe-{}", std::process::id());
    let path = format!("{}/.well-known/acme-challenge/{token}", paths::ACME_WEBROOT);
    root.write_atomic(&path, token.as_bytes(), 0o644, 0, 0).map_err(|e| format!("{e:#}"))?;
    // nginx may still be switching workers after a reload: retry briefly before judging.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let answer = loop {
        let a = health::request_host(80, "GET", &format!("/.well-known/acme-challenge/{token}"), host);
        let good = a.as_ref().is_ok_and(|a| a.status == 200 && a.body == token);
        if good || std::time::Instant::now() >= deadline {
            break a;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let _ = root.remove(&path);
    match answer {
        Ok(a) if a.status == 200 && a.body == token => Ok(()),
        Ok(a) => Err(format!(
            "nginx answered HTTP {} for the probe token: the {host} vhost does not serve the challenge path",
            a.status
        )),
        Err(e) => Err(format!("nginx on 127.0.0.1:80 is unreachable: {e}")),
    }
}

/// The certificate in service for `state`, if it parses.
fn in_service(root: &Root, state: &TlsState) -> Option<CertInfo> {
    match state {
        TlsState::Https { cert, .. } => certs::read_leaf(&root.path(cert)).ok(),
        TlsState::HttpPlaceholder => None,
    }
}

/// Errors worth one immediate retry (nonce errors are retried inside instant-acme already).
fn is_transient(class: &str) -> bool {
    matches!(class, "connection" | "timeout" | "serverInternal")
}

/// Converge every host's certificate (ARI windows: the point is `serial_jitter`). Returns per-host
/// outcomes and whether any certificate was installed (the vhosts must then be re-rendered).
pub async fn converge(
    root: &Root,
    settings: &Settings,
    tls: &BTreeMap<String, TlsState>,
    now: i64,
) -> anyhow::Result<(BTreeMap<String, HostOutcome>, bool)> {
    let mut ledger = read_ledger(root)?;
    let before = ledger.clone();
    let mut ari: BTreeMap<String, AriEntry> = match root.read_string(ARI_FILE)? {
        Some(t) => serde_json::from_str(&t).unwrap_or_default(),
        None => BTreeMap::new(),
    };
    let ari_before = ari.clone();
    let mut out = BTreeMap::new();
    let mut installed = false;
    let a = &settings.acme;
    let resolver: Option<SocketAddr> = a.resolver.or_else(|| {
        std::fs::read_to_string(root.path("/etc/resolv.conf")).ok().and_then(|t| dns::resolv_conf_server(&t))
    });
    let mut account = None;
    let mut public_ip: Option<Result<std::net::Ipv4Addr, String>> = a.public_ipv4.map(Ok);
    for (host, state) in tls {
        let current = in_service(root, state);
        if let Some(c) = &current {
            let window = ari_window(&mut ari, &mut account, root, settings, host, c, now).await;
            let cert = Cert { not_before: c.not_before, not_after: c.not_after, ari: window };
            let r = acme_policy::renewal_time(&cert, now, acme_policy::serial_jitter(&c.serial));
            if r.at > now {
                let mut o = HostOutcome::new(CertState::Https, format!("renewal due at {} ({})", r.at, r.why));
                (o.not_after, o.renew_at) = (Some(c.not_after), Some(r.at));
                out.insert(host.clone(), o);
                continue;
            }
        }
        // Keep serving what we have (even expired) whatever happens below.
        let keep = |mut o: HostOutcome| {
            o.not_after = current.as_ref().map(|c| c.not_after);
            o
        };
        if public_ip.is_none() {
            public_ip =
                Some(crate::host::imds::public_ipv4(a.imds_endpoint.as_deref()).await.map_err(|e| format!("{e:#}")));
        }
        let public_ip = match public_ip.clone().expect("set above") {
            Ok(ip) => ip,
            Err(e) => {
                out.insert(host.clone(), keep(HostOutcome::new(CertState::Failed, e)));
                continue;
            }
        };
        let Some(resolver) = resolver else {
            out.insert(
                host.clone(),
                keep(HostOutcome::new(
                    CertState::Failed,
                    "no DNS resolver: set acme.resolver or a nameserver in /etc/resolv.conf",
                )),
            );
            continue;
        };
        let lookup = dns::lookup_a(resolver, host);
        if let DnsVerdict::DnsNotReady { expected, found, detail } = acme_policy::dns_verdict(public_ip, &lookup) {
            let msg = format!("{detail}: expected {expected}, found [{}]", found.join(", "));
            out.insert(host.clone(), keep(HostOutcome::new(CertState::DnsNotReady, msg)));
            continue;
        }
        if let Err(not_yet) = acme_policy::may_order(ledger.get(host), now) {
            let msg = format!(
                "{} failed order(s), last {}; next attempt at {}",
                not_yet.failures, not_yet.last_error_class, not_yet.next_attempt
            );
            out.insert(host.clone(), keep(HostOutcome::new(CertState::Backoff, msg)));
            continue;
        }
        if let Err(e) = self_check(root, host).await {
            out.insert(host.clone(), keep(HostOutcome::new(CertState::SelfCheckFailed, e)));
            continue;
        }
        let acct = ensure_account(&mut account, root, settings).await?;
        let (profile, note) = acme::pick_profile(acct, a.profile.as_deref());
        let mut attempt = acme::issue(acct, root, host, profile).await;
        if let Err(f) = &attempt
            && is_transient(&f.class)
        {
            // A dropped connection or a CA hiccup is worth one more try in this run; a validation
            // failure is not (it would burn the CA's failed-validation limit).
            tracing::warn!(host = %host, class = %f.class, "transient ACME failure; retrying once");
            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            attempt = acme::issue(acct, root, host, profile).await;
        }
        match attempt {
            Ok(issued) => {
                let info =
                    certs::leaf_of_pem(&issued.chain_pem).context("the CA returned an unreadable certificate")?;
                acme::install(root, host, &info.serial.replace(':', ""), &issued)?;
                ledger.remove(host);
                installed = true;
                let mut o = HostOutcome::new(CertState::Issued, format!("serial {}", info.serial));
                o.serial = Some(info.serial.clone());
                if let Some(n) = note {
                    o.detail = format!("{}; {n}", o.detail);
                }
                o.not_after = Some(info.not_after);
                out.insert(host.clone(), o);
            }
            Err(failed) => {
                tracing::warn!(host = %host, class = %failed.class, "certificate order failed");
                ledger.insert(
                    host.clone(),
                    acme_policy::record_failure(ledger.get(host), now, &failed.class, failed.retry_after),
                );
                out.insert(host.clone(), keep(HostOutcome::new(CertState::Failed, failed.to_string())));
            }
        }
    }
    if ledger != before {
        write_ledger(root, &ledger)?;
    }
    if ari != ari_before {
        std::fs::create_dir_all(root.path(acme::ACCOUNT_DIR)).context("failed to create the ACME state directory")?;
        root.write_atomic(ARI_FILE, (serde_json::to_string_pretty(&ari)? + "\n").as_bytes(), 0o600, 0, 0)?;
    }
    Ok((out, installed))
}
