//! The certificate step of a converge (spec §7): for every public host, keep serving a usable
//! certificate, or — when none is usable or renewal is due — check DNS, respect the failure
//! ledger, prove the challenge path through nginx, order, and install. Decisions come from
//! `acme_policy`; this module only gathers facts and carries them out.

use std::collections::BTreeMap;

use anyhow::Context;
use futures_util::StreamExt as _;
use serde::Serialize;

use crate::decide::acme_policy::{self, AriAnswer, Cert, CertState, Step};
use crate::decide::times;
use crate::host::acme::{self, AcmeConfig};
use crate::host::acme_store::{AcmeStore, Issue};
use crate::host::dns_facts::DnsFacts;

use crate::decide::paths;
use crate::decide::render::TlsState;
use crate::decide::settings::Settings;
use crate::host::certs::{self, CertInfo};
use crate::host::fs::Root;
use crate::host::health;

/// The configured CAs, primary first: where each is, its CA bundle, its account binding.
fn cas(root: &Root, settings: &Settings) -> anyhow::Result<Vec<AcmeConfig>> {
    let a = &settings.acme;
    let eab = |e: &Option<(String, String)>| -> anyhow::Result<Option<acme::Eab>> {
        let Some((kid, file)) = e else { return Ok(None) };
        let text = root.read_string(file)?.with_context(|| {
            format!("the EAB HMAC key file {file} does not exist; write the CA's key (base64url) there, mode 0600")
        })?;
        let hmac_key = base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            text.trim().trim_end_matches('='),
        )
        .ok()
        .filter(|k| !k.is_empty())
        .with_context(|| format!("{file} does not hold a base64url HMAC key (as the CA gives it)"))?;
        Ok(Some(acme::Eab { kid: kid.clone(), hmac_key }))
    };
    let mut out = vec![AcmeConfig {
        directory_url: a.directory_url.clone(),
        ca_bundle: a.ca_bundle.as_ref().map(|p| root.path(p)),
        contact_email: a.contact_email.clone(),
        eab: eab(&a.eab)?,
        fallback: false,
    }];
    if let Some(f) = &a.fallback {
        out.push(AcmeConfig {
            directory_url: f.directory_url.clone(),
            ca_bundle: f.ca_bundle.as_ref().map(|p| root.path(p)),
            contact_email: a.contact_email.clone(),
            eab: eab(&f.eab)?,
            fallback: true,
        });
    }
    Ok(out)
}

/// One account per CA, registered or restored on first use.
struct Accounts<'a> {
    root: &'a Root,
    cas: Vec<AcmeConfig>,
    cells: Vec<tokio::sync::OnceCell<acme::Account>>,
}

impl<'a> Accounts<'a> {
    fn new(root: &'a Root, cas: Vec<AcmeConfig>) -> Self {
        let cells = cas.iter().map(|_| tokio::sync::OnceCell::new()).collect();
        Self { root, cas, cells }
    }

    async fn get(&self, i: usize) -> anyhow::Result<&acme::Account> {
        self.cells[i].get_or_try_init(|| acme::account(self.root, &self.cas[i])).await
    }

    fn directories(&self) -> Vec<&str> {
        self.cas.iter().map(|c| c.directory_url.as_str()).collect()
    }
}

/// The ARI window of `cert`, from the cache while fresh, else asked from the CA that issued it (a
/// CA without ARI, or one that cannot be reached, leaves the lifetime rule in charge).
async fn ari_window(
    store: &mut AcmeStore,
    accounts: &Accounts<'_>,
    ca: usize,
    host: &str,
    cert: &CertInfo,
    now: i64,
) -> Option<(i64, i64)> {
    if let Some(e) = acme_policy::fresh(store.ari.get(host), &cert.serial, now) {
        return e.window;
    }
    let asked = match accounts.get(ca).await {
        Ok(acct) => acme::renewal_window(acct, &cert.leaf_der).await,
        Err(e) => Err(e),
    };
    let answer = match asked {
        Ok(Some((w, retry))) => AriAnswer::Window(w, retry),
        Ok(None) => AriAnswer::NotOffered,
        Err(e) => {
            tracing::warn!(host, error = %format!("{e:#}"), "renewal information unavailable; using the lifetime rule");
            AriAnswer::Unavailable
        }
    };
    let entry = acme_policy::ari_entry(&cert.serial, answer, now);
    let window = entry.window;
    store.ari.insert(host.to_owned(), entry);
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
    /// For a certificate issued in this run: whether its order named the one it replaces.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replaces: Option<acme::Replaces>,
    /// The CA (directory URL) this run's order went to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca: Option<String>,
    pub detail: String,
}

impl HostOutcome {
    fn new(state: CertState, detail: impl Into<String>) -> Self {
        Self { state, serial: None, not_after: None, renew_at: None, replaces: None, ca: None, detail: detail.into() }
    }

    /// Whole days until the certificate expires (negative when expired).
    pub(crate) fn days_left(&self, now: i64) -> Option<i64> {
        self.not_after.map(|t| (t - now).div_euclid(86_400))
    }
}

pub(crate) use crate::decide::acme_policy::HostSchedule;

/// Every host's renewal time and why (ARI from the cache, else the lifetime rule), with its ledger.
pub fn schedule(root: &Root, tls: &BTreeMap<String, TlsState>, now: i64) -> anyhow::Result<Vec<HostSchedule>> {
    let AcmeStore { ledger, ari, issued, .. } = AcmeStore::load(root)?;
    Ok(tls
        .iter()
        .map(|(host, state)| {
            let current = in_service(root, state);
            let cached = current.as_ref().and_then(|c| acme_policy::cached(ari.get(host), &c.serial));
            let renewal = current.as_ref().map(|c| {
                let cert =
                    Cert { not_before: c.not_before, not_after: c.not_after, ari: cached.and_then(|e| e.window) };
                acme_policy::renewal_time(&cert, now, acme_policy::serial_jitter(&c.serial))
            });
            let overdue = match (&current, &renewal) {
                (Some(c), Some(r)) => acme_policy::overdue(c.not_before, c.not_after, r.at, now),
                _ => false,
            };
            if overdue {
                tracing::warn!(host = %host, "certificate overdue for renewal; check `agentkeys-hostd status` and the ACME ledger");
            }
            HostSchedule {
                host: host.clone(),
                state: state.name().to_owned(),
                not_after: current.as_ref().map(|c| c.not_after),
                renew_at: renewal.as_ref().map(|r| r.at),
                not_after_rfc3339: current.as_ref().map(|c| times::rfc3339(c.not_after)),
                renew_at_rfc3339: renewal.as_ref().map(|r| times::rfc3339(r.at)),
                renew_why: renewal.map(|r| r.why),
                ari_next_check: cached.map(|e| e.next_check),
                ledger: ledger.get(host).cloned(),
                ca: issued
                    .get(host)
                    .filter(|i| current.as_ref().is_some_and(|c| c.serial == i.serial) && !i.ca.is_empty())
                    .map(|i| i.ca.clone()),
                overdue,
            }
        })
        .collect())
}

/// Fetch a probe token through nginx on port 80 with the host's `Host` header (each try a short
/// loopback request; the waits between them yield to the runtime).
async fn self_check(root: &Root, host: &str) -> Result<(), String> {
    // One token per host: hosts are checked concurrently.
    let token = format!("hostd-probe-{}-{host}", std::process::id());
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

/// How many hosts are ordered at once.
const PARALLEL_ORDERS: usize = 4;

/// What ordering one host came to, and from which CA.
enum Ordered {
    Issued(acme::Issued, String, Option<String>),
    Failed(acme::OrderFailed, String),
    SelfCheckFailed(String),
}

/// Self-check, then order from each CA in `order` until one issues: the next CA is tried only when
/// this one cannot be reached or is broken (one retry of a transient failure first).
async fn order_one(
    root: &Root,
    accounts: &Accounts<'_>,
    order: &[usize],
    host: &str,
    profile: Option<&str>,
    replaces: Option<&[u8]>,
) -> Ordered {
    if let Err(e) = self_check(root, host).await {
        return Ordered::SelfCheckFailed(e);
    }
    let mut last = None;
    for &i in order {
        let ca = accounts.cas[i].directory_url.clone();
        let acct = match accounts.get(i).await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(host = %host, ca = %ca, error = %format!("{e:#}"), "CA unreachable; trying the next");
                let detail = format!("{ca}: {e:#}");
                last = Some(Ordered::Failed(
                    acme::OrderFailed {
                        host: host.to_owned(),
                        class: "unreachable".into(),
                        detail,
                        retry_after: None,
                        unpause_url: None,
                    },
                    ca,
                ));
                continue;
            }
        };
        let (profile, note) = acme::pick_profile(acct, profile);
        let mut attempt = acme::issue(acct, root, host, profile, replaces).await;
        if let Err(f) = &attempt
            && acme_policy::is_transient(&f.class)
        {
            tracing::warn!(host = %host, class = %f.class, "transient ACME failure; retrying once");
            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            attempt = acme::issue(acct, root, host, profile, replaces).await;
        }
        match attempt {
            Ok(issued) => return Ordered::Issued(issued, ca, note),
            Err(f) if acme_policy::moves_on(&f.class) => {
                tracing::warn!(host = %host, ca = %ca, class = %f.class, "CA failing; trying the next");
                last = Some(Ordered::Failed(f, ca));
            }
            Err(f) => return Ordered::Failed(f, ca),
        }
    }
    last.unwrap_or_else(|| Ordered::SelfCheckFailed("internal: no CA configured".into()))
}

/// Converge every host's certificate (ARI windows: the point is `serial_jitter`), deciding each
/// host's step with `acme_policy::next_step`. The ledger and ARI cache are the caller's `store`
/// (read and written once per run); the DNS facts are gathered once, at the first due host.
/// The hosts due for an order are ordered concurrently ([`PARALLEL_ORDERS`] at a time); each is
/// installed (after `before_install`) and recorded as soon as its order ends, so a slow or failing
/// host never holds the others back. Returns per-host outcomes and whether any certificate was
/// installed (the vhosts must then be re-rendered).
pub(crate) async fn converge(
    root: &Root,
    settings: &Settings,
    tls: &BTreeMap<String, TlsState>,
    store: &mut AcmeStore,
    now: i64,
    unpaused: &[String],
    before_install: &mut dyn FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<(BTreeMap<String, HostOutcome>, bool)> {
    // The operator lifted these hosts' pauses at the CA.
    for host in unpaused {
        if let Some(l) = store.ledger.get(host).filter(|l| l.unpause_url.is_some()) {
            tracing::info!(host = %host, "pause cleared by the operator");
            store.ledger.insert(host.clone(), acme_policy::unpaused(l.clone(), now));
        }
    }
    let mut out = BTreeMap::new();
    let a = &settings.acme;
    let accounts = Accounts::new(root, cas(root, settings)?);
    let directories: Vec<String> = accounts.directories().into_iter().map(str::to_owned).collect();
    let dirs: Vec<&str> = directories.iter().map(String::as_str).collect();
    let mut facts: Option<DnsFacts> = None;
    // Decide every host's step (ARI asked, DNS looked up only where needed), in host order.
    let mut due: Vec<(String, Option<CertInfo>)> = Vec::new();
    for (host, state) in tls {
        let current = in_service(root, state);
        let renewal = match &current {
            Some(c) => {
                let issuer = store.issued.get(host).map(|i| i.ca.as_str());
                let ca = acme_policy::ca_order(&dirs, issuer, None)[0];
                let window = ari_window(store, &accounts, ca, host, c, now).await;
                let cert = Cert { not_before: c.not_before, not_after: c.not_after, ari: window };
                Some(acme_policy::renewal_time(&cert, now, acme_policy::serial_jitter(&c.serial)))
            }
            None => None,
        };
        if acme_policy::is_due(renewal.as_ref(), now) && facts.is_none() {
            facts = Some(DnsFacts::gather(root, a).await);
        }
        let step = acme_policy::next_step(renewal.as_ref(), store.ledger.get(host), now, || {
            facts.as_ref().map_or_else(|| Err("internal: DNS facts not gathered".into()), |f| f.verdict(host))
        });
        let keep = |state: CertState, detail: String| {
            let mut o = HostOutcome::new(state, detail);
            o.not_after = current.as_ref().map(|c| c.not_after);
            o
        };
        let outcome = match step {
            Step::Keep(r) => {
                let mut o = HostOutcome::new(CertState::Https, format!("renewal due at {} ({})", r.at, r.why));
                (o.not_after, o.renew_at) = (current.as_ref().map(|c| c.not_after), Some(r.at));
                o
            }
            Step::Fail(e) => keep(CertState::Failed, e),
            Step::Park(detail) => keep(CertState::DnsNotReady, detail),
            Step::BackOff(n) => keep(
                CertState::Backoff,
                format!(
                    "{} failed order(s), last {}; next attempt at {}",
                    n.failures, n.last_error_class, n.next_attempt
                ),
            ),
            Step::Order => {
                due.push((host.clone(), current));
                continue;
            }
        };
        out.insert(host.clone(), outcome);
    }
    if due.is_empty() {
        return Ok((out, false));
    }
    let plans: Vec<(String, Option<CertInfo>, Vec<usize>)> = due
        .into_iter()
        .map(|(host, current)| {
            let issuer = store.issued.get(&host).map(|i| i.ca.as_str());
            let order = acme_policy::ca_order(&dirs, issuer, store.ledger.get(&host));
            (host, current, order)
        })
        .collect();
    let accounts = &accounts;
    let profile = a.profile.as_deref();
    let mut orders = futures_util::stream::iter(plans.iter().map(|(host, current, order)| async move {
        let replaces = current.as_ref().map(|c| c.leaf_der.as_slice());
        (host, current, order_one(root, accounts, order, host, profile, replaces).await)
    }))
    .buffer_unordered(PARALLEL_ORDERS);
    let mut installed = false;
    while let Some((host, current, ordered)) = orders.next().await {
        let kept = current.as_ref().map(|c| c.not_after);
        let outcome = match ordered {
            Ordered::SelfCheckFailed(e) => {
                HostOutcome { not_after: kept, ..HostOutcome::new(CertState::SelfCheckFailed, e) }
            }
            Ordered::Failed(failed, ca) => {
                tracing::warn!(host = %host, class = %failed.class, ca = %ca, "certificate order failed");
                if let Some(url) = &failed.unpause_url {
                    tracing::error!(host = %host, unpause = %url, "the CA paused ordering for this host");
                }
                let entry = acme_policy::failed_order(
                    store.ledger.get(host),
                    now,
                    &failed.class,
                    failed.retry_after,
                    &ca,
                    failed.unpause_url.as_deref(),
                );
                store.ledger.insert(host.clone(), entry);
                HostOutcome { not_after: kept, ca: Some(ca), ..HostOutcome::new(CertState::Failed, failed.to_string()) }
            }
            Ordered::Issued(issued, ca, note) => {
                let info =
                    certs::leaf_of_pem(&issued.chain_pem).context("the CA returned an unreadable certificate")?;
                // Before anything nginx serves changes: the run that completes this one must reload.
                before_install()?;
                acme::install(root, host, &info.serial.replace(':', ""), &issued)?;
                store.ledger.remove(host);
                store.issued.insert(
                    host.clone(),
                    Issue { serial: info.serial.clone(), at: now, replaces: issued.replaces.clone(), ca: ca.clone() },
                );
                installed = true;
                let mut o = HostOutcome::new(CertState::Issued, format!("serial {}", info.serial));
                o.serial = Some(info.serial.clone());
                o.replaces = Some(issued.replaces.clone());
                o.ca = Some(ca);
                if let Some(n) = &note {
                    o.detail = format!("{}; {n}", o.detail);
                }
                o.not_after = Some(info.not_after);
                o
            }
        };
        out.insert(host.clone(), outcome);
    }
    Ok((out, installed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::acme_policy::{AriEntry, Ledger};

    /// A self-signed 90-day certificate at `path` under `root` (openssl, as the ACME tests use).
    fn certificate(root: &Root, path: &str) -> CertInfo {
        let file = root.path(path);
        std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
        let key = file.with_extension("key");
        let out = std::process::Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "90"])
            .args(["-subj", "/CN=broker.litentry.org", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&file)
            .output()
            .expect("openssl");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        certs::read_leaf(&file).expect("the certificate parses")
    }

    #[test]
    fn the_schedule_reads_certificates_the_ari_cache_and_the_ledger() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = Root::new(dir.path());
        let cert = certificate(&root, "/tls/broker/fullchain.pem");
        let https =
            TlsState::Https { cert: "/tls/broker/fullchain.pem".into(), key: "/tls/broker/fullchain.key".into() };
        let tls = BTreeMap::from([
            ("broker.litentry.org".to_owned(), https),
            ("signer.litentry.org".to_owned(), TlsState::HttpPlaceholder),
        ]);
        let now = cert.not_before + 86_400;
        let plain = schedule(&root, &tls, now).expect("schedule");
        assert_eq!(plain.len(), 2);
        let broker = &plain[0];
        assert_eq!(broker.renew_at, Some(cert.not_after - (cert.not_after - cert.not_before) / 3), "1/3 left");
        assert!(broker.renew_why.as_deref().is_some_and(|w| w.contains("1/3")), "{broker:?}");
        assert_eq!((plain[1].state.as_str(), plain[1].renew_at), ("http-placeholder", None));

        // A cached ARI window (even a stale one: the schedule never asks the CA) and a ledger entry.
        let mut store = AcmeStore::load(&root).expect("store");
        let window = (now + 10 * 86_400, now + 11 * 86_400);
        let entry = AriEntry { serial: cert.serial.clone(), window: Some(window), next_check: now - 1 };
        store.ari.insert("broker.litentry.org".into(), entry);
        let failed = Ledger { failures: 2, next_attempt: now + 3_600, ..Ledger::default() };
        store.ledger.insert("signer.litentry.org".into(), failed.clone());
        store.save(&root).expect("save");
        let with = schedule(&root, &tls, now).expect("schedule");
        let at = with[0].renew_at.expect("a renewal time");
        assert!((window.0..window.1).contains(&at), "{at} inside {window:?}");
        assert_eq!(with[0].ari_next_check, Some(now - 1));
        assert_eq!(with[1].ledger.as_ref(), Some(&failed));
    }

    #[test]
    fn a_certificate_past_its_renewal_is_overdue_in_the_schedule_doctor_and_metrics() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = Root::new(dir.path());
        let cert = certificate(&root, "/tls/broker/fullchain.pem");
        let https =
            TlsState::Https { cert: "/tls/broker/fullchain.pem".into(), key: "/tls/broker/fullchain.key".into() };
        let tls = BTreeMap::from([("broker.litentry.org".to_owned(), https)]);
        let lifetime = cert.not_after - cert.not_before;
        let renew = cert.not_after - lifetime / 3;
        let on_time = schedule(&root, &tls, renew + lifetime / 15).expect("schedule");
        assert!(!on_time[0].overdue, "within the grace");
        let late = schedule(&root, &tls, renew + lifetime / 15 + 1).expect("schedule");
        assert!(late[0].overdue);
        assert_eq!(late[0].not_after_rfc3339.as_deref(), Some(times::rfc3339(cert.not_after).as_str()));
        let check = crate::decide::doctor::certificate(&late[0], renew + lifetime / 15 + 1).expect("a check");
        assert_eq!(check.verdict, crate::decide::doctor::Verdict::Fail, "{}", check.detail);
        assert!(check.detail.starts_with("overdue: renewal "), "{}", check.detail);
        let record = crate::decide::daemon::record::DaemonRecord { hosts: late, ..Default::default() };
        let metrics = crate::decide::metrics::render(&record, &BTreeMap::new());
        assert!(metrics.contains("agentkeys_hostd_certificate_overdue{host=\"broker.litentry.org\"} 1"), "{metrics}");
    }
}
