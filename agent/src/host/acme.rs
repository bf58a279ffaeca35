//! ACME HTTP-01 with `instant-acme`: the account is created once and persisted 0600 under hostd's
//! state directory; challenges are answered from the webroot nginx serves on port 80; every
//! certificate gets a fresh ECDSA P-256 key; certificate and key are installed as one unit
//! (a new version directory, then one atomic `current` symlink switch).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
pub use instant_acme::Account;
use instant_acme::{
    AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount, NewOrder, OrderStatus, RetryPolicy,
};
use serde::{Deserialize, Serialize};

use crate::decide::paths;
use crate::host::fs::Root;

pub const ACCOUNT_DIR: &str = "/var/lib/agentkeys-hostd/acme";
const ACCOUNT_FILE: &str = "/var/lib/agentkeys-hostd/acme/account.json";
/// The fallback CA's account (one account per CA).
const FALLBACK_ACCOUNT_FILE: &str = "/var/lib/agentkeys-hostd/acme/account-fallback.json";

/// An external account binding (ZeroSSL, Google Trust Services): the key id and the HMAC key.
#[derive(Clone, PartialEq, Eq)]
pub struct Eab {
    pub kid: String,
    pub hmac_key: Vec<u8>,
}

impl std::fmt::Debug for Eab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Eab").field("kid", &self.kid).finish_non_exhaustive()
    }
}

/// Where and how to reach the CA.
#[derive(Debug, Clone, Default)]
pub struct AcmeConfig {
    pub directory_url: String,
    /// CA bundle for the ACME API itself (Pebble's, a private CA's); system roots when `None`.
    pub ca_bundle: Option<PathBuf>,
    pub contact_email: Option<String>,
    /// Required by some CAs to register an account.
    pub eab: Option<Eab>,
    /// The fallback CA keeps its account in a file of its own.
    pub fallback: bool,
}

#[derive(Serialize, Deserialize)]
struct StoredAccount {
    directory_url: String,
    credentials: AccountCredentials,
}

/// A failed order, classified for the ledger (`rateLimited`, `unauthorized`, `connection`, …).
#[derive(Debug, thiserror::Error)]
#[error("ACME order for {host} failed ({class}): {detail}")]
pub struct OrderFailed {
    pub host: String,
    pub class: String,
    pub detail: String,
    /// When the CA said to try again (unix seconds), if it did.
    pub retry_after: Option<i64>,
    /// The CA paused this account and host; this URL lifts it (Let's Encrypt's self-service).
    pub unpause_url: Option<String>,
}

/// The self-service unpause URL in a CA's problem detail, if there is one.
pub(crate) fn unpause_url_in(detail: &str) -> Option<String> {
    detail
        .split(|c: char| c.is_whitespace() || c == '"' || c == '<' || c == '>')
        .map(|t| t.trim_end_matches(['.', ',', ')', ';']))
        .find(|t| t.starts_with("https://") && t.to_ascii_lowercase().contains("unpause"))
        .map(str::to_owned)
}

/// The time in a CA's "retry after 2026-11-30 10:00:00 UTC" (Let's Encrypt's rate-limit wording).
pub(crate) fn retry_after_in(detail: &str) -> Option<i64> {
    let lower = detail.to_ascii_lowercase();
    let at = lower.find("retry after ")? + "retry after ".len();
    let stamp = detail.get(at..at + 19)?;
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    let t = time::PrimitiveDateTime::parse(stamp, &format).ok()?;
    Some(t.assume_utc().unix_timestamp())
}

/// The CA's suggested renewal window for `leaf_der` (RFC 9773) and how long to wait before asking
/// again; `None` when the CA offers no ARI.
pub async fn renewal_window(account: &Account, leaf_der: &[u8]) -> anyhow::Result<Option<((i64, i64), i64)>> {
    let der = rustls::pki_types::CertificateDer::from(leaf_der.to_vec());
    let id = instant_acme::CertificateIdentifier::try_from(&der)
        .map_err(|e| anyhow::anyhow!("certificate identifier: {e}"))?;
    match account.renewal_info(&id).await {
        Ok((info, retry)) => {
            let w = info.suggested_window;
            // Round up: never ask again before the CA said to.
            let secs = retry.as_secs() + u64::from(retry.subsec_nanos() > 0);
            let retry = i64::try_from(secs).unwrap_or(i64::MAX).max(60);
            Ok(Some(((w.start.unix_timestamp(), w.end.unix_timestamp()), retry)))
        }
        Err(instant_acme::Error::Unsupported(_)) => Ok(None),
        Err(e) => Err(anyhow::anyhow!("renewal information: {e}")),
    }
}

/// The longest one request to the CA may take to answer. A CA that accepts the connection and
/// never answers (Pebble 2.4 did, creating orders in parallel) fails that order as a connection
/// error instead of holding the run, and the daemon's lock, forever.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// An HTTP client for instant-acme whose every request is bounded by `limit`.
struct Bounded<C> {
    inner: C,
    limit: Duration,
}

type AcmeRequest = hyper::Request<instant_acme::BodyWrapper<bytes::Bytes>>;
type AcmeAnswer =
    std::pin::Pin<Box<dyn Future<Output = Result<instant_acme::BytesResponse, instant_acme::Error>> + Send>>;

impl<C: instant_acme::HttpClient> instant_acme::HttpClient for Bounded<C> {
    fn request(&self, req: AcmeRequest) -> AcmeAnswer {
        let what = format!("{} {}", req.method(), req.uri());
        let answer = self.inner.request(req);
        let limit = self.limit;
        Box::pin(async move {
            tokio::time::timeout(limit, answer).await.unwrap_or_else(|_| {
                Err(instant_acme::Error::Other(
                    format!("the ACME server did not answer {what} within {} s", limit.as_secs_f64()).into(),
                ))
            })
        })
    }
}

/// The account builder talking to the CA through hostd's HTTPS client (the CA bundle when
/// configured, else the system's roots), each request bounded by [`REQUEST_TIMEOUT`].
fn builder(cfg: &AcmeConfig) -> anyhow::Result<instant_acme::AccountBuilder> {
    let client =
        crate::host::download::https_client::<instant_acme::BodyWrapper<bytes::Bytes>>(cfg.ca_bundle.as_deref())
            .with_context(|| match &cfg.ca_bundle {
                Some(pem) => format!("failed to load the ACME CA bundle {}", pem.display()),
                None => "failed to set up the ACME HTTP client".to_owned(),
            })?;
    Ok(Account::builder_with_http(Box::new(Bounded { inner: client, limit: REQUEST_TIMEOUT })))
}

/// The account for `cfg.directory_url`: loaded if stored for that directory, else created once.
pub async fn account(root: &Root, cfg: &AcmeConfig) -> anyhow::Result<Account> {
    account_with(root, cfg, || builder(cfg)).await
}

/// The same with the HTTP client chosen by the caller (tests talk to an in-process CA).
pub async fn account_with(
    root: &Root,
    cfg: &AcmeConfig,
    builder: impl Fn() -> anyhow::Result<instant_acme::AccountBuilder>,
) -> anyhow::Result<Account> {
    let file = if cfg.fallback { FALLBACK_ACCOUNT_FILE } else { ACCOUNT_FILE };
    if let Some(text) = root.read_string(file)? {
        let stored: StoredAccount = serde_json::from_str(&text)
            .with_context(|| format!("{file} is unreadable; move it aside to register a new account"))?;
        if stored.directory_url == cfg.directory_url {
            return builder()?
                .from_credentials(stored.credentials)
                .await
                .with_context(|| format!("failed to restore the ACME account for {}", cfg.directory_url));
        }
        bail!(
            "{file} belongs to {}, not {}; move it aside deliberately to register with the new CA",
            stored.directory_url,
            cfg.directory_url
        );
    }
    let contact: Vec<String> = cfg.contact_email.iter().map(|e| format!("mailto:{e}")).collect();
    let contact: Vec<&str> = contact.iter().map(String::as_str).collect();
    let new = NewAccount { contact: &contact, terms_of_service_agreed: true, only_return_existing: false };
    let eab = cfg.eab.as_ref().map(|e| instant_acme::ExternalAccountKey::new(e.kid.clone(), &e.hmac_key));
    let (account, credentials) = builder()?
        .create(&new, cfg.directory_url.clone(), eab.as_ref())
        .await
        .with_context(|| format!("failed to register an ACME account with {}", cfg.directory_url))?;
    std::fs::create_dir_all(root.path(ACCOUNT_DIR)).context("failed to create the ACME state directory")?;
    root.set_meta(ACCOUNT_DIR, 0o700, 0, 0)?;
    let stored = StoredAccount { directory_url: cfg.directory_url.clone(), credentials };
    root.write_atomic(file, serde_json::to_string(&stored)?.as_bytes(), 0o600, 0, 0)?;
    Ok(account)
}

fn classify(e: &instant_acme::Error) -> String {
    match e {
        instant_acme::Error::Api(p) => {
            p.r#type.as_deref().and_then(|t| t.rsplit(':').next()).unwrap_or("problem").to_owned()
        }
        instant_acme::Error::Timeout(_) => "timeout".into(),
        instant_acme::Error::Unsupported(_) => "unsupported".into(),
        _ => "connection".into(),
    }
}

/// A certificate chain and its private key, PEM.
#[derive(Clone)]
pub struct Issued {
    pub chain_pem: String,
    pub key_pem: String,
    /// How the order named the certificate it replaces (ARI, RFC 9773 §5).
    pub replaces: Replaces,
}

/// Whether a renewal order said which certificate it replaces: renewals that do are exempt from
/// Let's Encrypt's rate limits; a CA that refuses the field is asked once more without it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "replaces")]
pub enum Replaces {
    /// A first certificate, or one whose identifier cannot be computed (no AKI extension).
    Nothing,
    /// Sent with the certificate identifier `<aki>.<serial>` (base64url).
    Sent { id: String },
    /// The CA refused it (e.g. `alreadyReplaced`); the order went out without it.
    Refused { id: String, why: String },
}

/// The ARI identifier of a certificate, if it has an authority key identifier.
fn certificate_id(leaf_der: &[u8]) -> Option<instant_acme::CertificateIdentifier<'static>> {
    let der = rustls::pki_types::CertificateDer::from(leaf_der.to_vec());
    instant_acme::CertificateIdentifier::try_from(&der).ok().map(instant_acme::CertificateIdentifier::into_owned)
}

/// Did the CA refuse the order because of its `replaces` field (and only for that)?
fn refuses_replaces(e: &instant_acme::Error) -> bool {
    match e {
        instant_acme::Error::Api(p) => {
            let kind = p.r#type.as_deref().unwrap_or_default();
            let said = p.detail.as_deref().unwrap_or_default().to_ascii_lowercase();
            kind.ends_with(":alreadyReplaced")
                || ((kind.ends_with(":malformed") || kind.ends_with(":badRequest")) && said.contains("replace"))
        }
        _ => false,
    }
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued").field("chain_pem_len", &self.chain_pem.len()).finish_non_exhaustive()
    }
}

/// The profile to request: `wanted` when the CA offers it, else none (the CA's default) and a note.
pub fn pick_profile<'a>(account: &Account, wanted: Option<&'a str>) -> (Option<&'a str>, Option<String>) {
    match wanted {
        Some(p) if account.profiles().any(|m| m.name == p) => (Some(p), None),
        Some(p) => (None, Some(format!("the CA does not offer profile {p:?}; ordered with its default"))),
        None => (None, None),
    }
}

/// Order a certificate for `host` and answer its HTTP-01 challenge from the webroot.
/// How an order is polled until it is ready and its certificate issued: 90 s in all, the wait
/// growing by 1.3 from 250 ms. instant-acme's default factor of 2 sleeps 16 s then 32 s, so a
/// validation the CA does after 16 s is seen at 32 s, and the next wait (64 s) would pass the
/// deadline: an order ~35 s slow would fail although 90 s were allowed. With 1.3 the waits stay
/// under a fifth of the time already spent, and the whole 90 s is used.
pub(crate) fn poll_policy() -> RetryPolicy {
    RetryPolicy::new().initial_delay(Duration::from_millis(250)).backoff(1.3).timeout(Duration::from_secs(90))
}

/// Order, validate (HTTP-01 through nginx) and download a certificate for `host`. A renewal passes
/// the certificate in service as `replaces`.
pub async fn issue(
    account: &Account,
    root: &Root,
    host: &str,
    profile: Option<&str>,
    replaces: Option<&[u8]>,
) -> Result<Issued, OrderFailed> {
    let fail = |class: String, detail: String| {
        let retry_after = retry_after_in(&detail);
        let unpause_url = unpause_url_in(&detail);
        OrderFailed { host: host.to_owned(), class, detail, retry_after, unpause_url }
    };
    let api = |e: instant_acme::Error| fail(classify(&e), e.to_string());
    let ids = [Identifier::Dns(host.to_owned())];
    let new = || match profile {
        Some(p) => NewOrder::new(&ids).profile(p),
        None => NewOrder::new(&ids),
    };
    let (mut order, replaced) = match replaces.and_then(certificate_id) {
        None => (account.new_order(&new()).await.map_err(api)?, Replaces::Nothing),
        Some(cid) => {
            let id = format!("{}.{}", cid.authority_key_identifier, cid.serial);
            match account.new_order(&new().replaces(cid)).await {
                Ok(o) => (o, Replaces::Sent { id }),
                // A CA without ARI (instant-acme refuses to send `replaces` to it): order plainly.
                Err(instant_acme::Error::Unsupported(what)) => {
                    let why = format!("the CA does not support {what}");
                    (account.new_order(&new()).await.map_err(api)?, Replaces::Refused { id, why })
                }
                Err(e) if refuses_replaces(&e) => {
                    tracing::warn!(host, error = %e, "the CA refused `replaces`; ordering once without it");
                    let why = e.to_string();
                    (account.new_order(&new()).await.map_err(api)?, Replaces::Refused { id, why })
                }
                Err(e) => return Err(api(e)),
            }
        }
    };
    let mut tokens = Vec::new();
    let mut authorizations = order.authorizations();
    while let Some(result) = authorizations.next().await {
        let mut authz = result.map_err(api)?;
        if authz.status == AuthorizationStatus::Valid {
            continue;
        }
        let mut challenge = authz
            .challenge(ChallengeType::Http01)
            .ok_or_else(|| fail("unsupported".into(), "the CA offered no http-01 challenge".into()))?;
        let token_path = format!("{}/.well-known/acme-challenge/{}", paths::ACME_WEBROOT, challenge.token);
        root.write_atomic(&token_path, challenge.key_authorization().as_str().as_bytes(), 0o644, 0, 0)
            .map_err(|e| fail("local".into(), format!("{e:#}")))?;
        tokens.push(token_path);
        challenge.set_ready().await.map_err(api)?;
    }
    let retry = poll_policy();
    let status = order.poll_ready(&retry).await;
    for t in &tokens {
        let _ = root.remove(t);
    }
    match status.map_err(api)? {
        OrderStatus::Ready => {}
        other => {
            let mut detail = format!("order ended {other:?}");
            let mut class = "invalid".to_owned();
            let mut authorizations = order.authorizations();
            while let Some(Ok(authz)) = authorizations.next().await {
                for ch in &authz.challenges {
                    if let Some(p) = &ch.error {
                        class = p.r#type.as_deref().and_then(|t| t.rsplit(':').next()).unwrap_or("invalid").to_owned();
                        detail = p.detail.clone().unwrap_or(detail);
                    }
                }
            }
            return Err(fail(class, detail));
        }
    }
    let key_pem = order.finalize().await.map_err(api)?;
    let chain_pem = order.poll_certificate(&retry).await.map_err(api)?;
    Ok(Issued { chain_pem, key_pem, replaces: replaced })
}

/// Install `issued` for `host` as version `version`: key and chain land in a new directory first,
/// then `current` switches to it atomically, so nginx never reads a new certificate with an old key.
pub fn install(root: &Root, host: &str, version: &str, issued: &Issued) -> anyhow::Result<()> {
    let base = format!("{}/{host}", paths::TLS_STORE);
    let dir = format!("{base}/{version}");
    std::fs::create_dir_all(root.path(&dir)).with_context(|| format!("failed to create {dir}"))?;
    root.set_meta(&base, 0o700, 0, 0)?;
    root.write_atomic(&format!("{dir}/privkey.pem"), issued.key_pem.as_bytes(), 0o600, 0, 0)?;
    crate::host::failpoints::hit("cert-key-written");
    root.write_atomic(&format!("{dir}/fullchain.pem"), issued.chain_pem.as_bytes(), 0o644, 0, 0)?;
    crate::host::failpoints::hit("cert-chain-written");
    root.symlink_atomic(&format!("{base}/current"), version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_ca_that_never_answers_fails_the_request_within_its_bound() {
        use instant_acme::HttpClient as _;
        // Accepts the connection, then says nothing (not even the TLS handshake).
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let _hold =
            std::thread::spawn(move || listener.accept().map(|(_held, _)| std::thread::sleep(Duration::from_secs(5))));
        let inner =
            crate::host::download::https_client::<instant_acme::BodyWrapper<bytes::Bytes>>(None).expect("client");
        let client = Bounded { inner, limit: Duration::from_millis(300) };
        let req = hyper::Request::get(format!("https://127.0.0.1:{port}/dir"))
            .body(instant_acme::BodyWrapper::default())
            .expect("request");
        let t0 = std::time::Instant::now();
        let Err(e) = client.request(req).await else { panic!("a silent CA answered") };
        assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
        let text = e.to_string();
        assert!(text.contains(&format!("did not answer GET https://127.0.0.1:{port}/dir within 0.3 s")), "{text}");
        assert_eq!(classify(&e), "connection", "retried like a refused connection");
    }

    #[test]
    fn the_unpause_url_is_read_from_the_problem() {
        let detail = "Your account is temporarily prevented from requesting certificates for broker.example.org and possibly others. Please visit: https://portal.letsencrypt.org/sfe/v1/unpause?jwt=eyJhbGciOi.x.y.";
        assert_eq!(
            unpause_url_in(detail).as_deref(),
            Some("https://portal.letsencrypt.org/sfe/v1/unpause?jwt=eyJhbGciOi.x.y")
        );
        assert_eq!(unpause_url_in("too many certificates: see https://letsencrypt.org/docs/rate-limits/"), None);
        assert_eq!(
            retry_after_in("too many, retry after 2026-11-30 10:00:00 UTC: see …"),
            Some(1_796_032_800),
            "the other rate-limit wording still gives a time"
        );
    }
}
