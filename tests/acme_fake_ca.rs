//! The ACME paths Debian's Pebble cannot exercise (no ARI, no profiles, no rate limits), against a
//! small in-process CA plugged in as instant-acme's HTTP client: renewal information (RFC 9773)
//! read and used, a profile requested only when offered, and `rateLimited` with its retry time
//! honoured by the ledger.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::prelude::BASE64_URL_SAFE_NO_PAD;
use bytes::Bytes;
use hostd::decide::acme_policy::{self, Cert};
use hostd::host::acme::{self, AcmeConfig};
use hostd::host::fs::Root;
use http::{Request, Response};
use instant_acme::{Account, BodyWrapper, BytesResponse, HttpClient};

const BASE: &str = "https://fake-ca.test";
const UNPAUSE: &str = "https://portal.fake-ca.test/sfe/v1/unpause?jwt=eyJ0eXAi.eyJzdWIi.c2ln";

#[derive(Default)]
struct Seen {
    order_payloads: Vec<serde_json::Value>,
    renewal_info_paths: Vec<String>,
}

#[derive(Clone)]
struct FakeCa {
    ari: Option<(&'static str, &'static str)>,
    profiles: bool,
    /// Refuse orders that carry `replaces` with `alreadyReplaced`.
    refuse_replaces: bool,
    /// Answer every order as Let's Encrypt does for a paused account and host.
    paused: bool,
    seen: Arc<Mutex<Seen>>,
}

impl FakeCa {
    fn answer(&self, method: &str, path: &str, body: &[u8]) -> Response<String> {
        let nonce = |b: http::response::Builder| b.header("Replay-Nonce", "fake-nonce");
        let json = |status: u16, v: serde_json::Value| {
            nonce(Response::builder().status(status).header("Content-Type", "application/json"))
                .body(v.to_string())
                .unwrap()
        };
        match (method, path) {
            ("GET", "/directory") => {
                let mut d = serde_json::json!({
                    "newNonce": format!("{BASE}/nonce"),
                    "newAccount": format!("{BASE}/account"),
                    "newOrder": format!("{BASE}/order"),
                });
                if self.ari.is_some() {
                    d["renewalInfo"] = format!("{BASE}/renewal-info").into();
                }
                if self.profiles {
                    d["meta"] = serde_json::json!({"profiles": {"tlsserver": "short-lived server certificates"}});
                }
                json(200, d)
            }
            ("HEAD", "/nonce") => nonce(Response::builder().status(200)).body(String::new()).unwrap(),
            ("POST", "/account") => {
                let r = nonce(Response::builder().status(201).header("Location", format!("{BASE}/account/1")));
                r.header("Content-Type", "application/json").body(r#"{"status":"valid"}"#.into()).unwrap()
            }
            ("POST", "/order") => {
                let jws: serde_json::Value = serde_json::from_slice(body).unwrap();
                let payload = BASE64_URL_SAFE_NO_PAD.decode(jws["payload"].as_str().unwrap()).unwrap();
                let payload: serde_json::Value = serde_json::from_slice(&payload).unwrap();
                let replaces = payload.get("replaces").is_some();
                self.seen.lock().unwrap().order_payloads.push(payload);
                if replaces && self.refuse_replaces {
                    let problem = serde_json::json!({
                        "type": "urn:ietf:params:acme:error:alreadyReplaced",
                        "detail": "the certificate has already been replaced",
                        "status": 409
                    });
                    let r = nonce(Response::builder().status(409));
                    return r.header("Content-Type", "application/problem+json").body(problem.to_string()).unwrap();
                }
                if self.paused {
                    let problem = serde_json::json!({
                        "type": "urn:ietf:params:acme:error:rateLimited",
                        "detail": format!("Your account is temporarily prevented from requesting certificates for broker.example.org and possibly others. Please visit: {UNPAUSE}"),
                        "status": 429
                    });
                    let r = nonce(Response::builder().status(429));
                    return r.header("Content-Type", "application/problem+json").body(problem.to_string()).unwrap();
                }
                let problem = serde_json::json!({
                    "type": "urn:ietf:params:acme:error:rateLimited",
                    "detail": "too many certificates (5) already issued for this exact set of identifiers in the last 168h0m0s, retry after 2026-11-30 10:00:00 UTC: see https://letsencrypt.org/docs/rate-limits/",
                    "status": 429
                });
                let r = nonce(Response::builder().status(429).header("Retry-After", "3600"));
                r.header("Content-Type", "application/problem+json").body(problem.to_string()).unwrap()
            }
            ("GET", p) if p.starts_with("/renewal-info/") => {
                self.seen.lock().unwrap().renewal_info_paths.push(p.to_owned());
                let (start, end) = self.ari.unwrap();
                let r = Response::builder()
                    .status(200)
                    .header("Retry-After", "21600")
                    .header("Content-Type", "application/json");
                r.body(serde_json::json!({"suggestedWindow": {"start": start, "end": end}}).to_string()).unwrap()
            }
            _ => json(404, serde_json::json!({"type": "urn:ietf:params:acme:error:malformed", "detail": path})),
        }
    }
}

impl HttpClient for FakeCa {
    fn request(
        &self,
        req: Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let ca = self.clone();
        Box::pin(async move {
            let (parts, mut body) = req.into_parts();
            let bytes = http_body_util::BodyExt::collect(&mut body).await.map(|b| b.to_bytes()).unwrap_or_default();
            let path = parts.uri.path().to_owned();
            let (p, b) = ca.answer(parts.method.as_str(), &path, &bytes).into_parts();
            Ok(BytesResponse { parts: p, body: Box::new(Bytes::from(b)) })
        })
    }
}

async fn account(ca: &FakeCa, root: &Root) -> Account {
    let cfg = AcmeConfig { directory_url: format!("{BASE}/directory"), ..AcmeConfig::default() };
    let http = ca.clone();
    acme::account_with(root, &cfg, move || Ok(Account::builder_with_http(Box::new(http.clone())))).await.unwrap()
}

/// A leaf signed by a throwaway CA, with an authority key identifier (what ARI identifies by).
fn leaf_der(dir: &std::path::Path) -> Vec<u8> {
    let run = |args: &[&str]| common::pebble::openssl(args, dir);
    run(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-subj",
        "/CN=ca",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    run(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-subj",
        "/CN=broker.example.org",
        "-keyout",
        "l.key",
        "-out",
        "l.csr",
    ]);
    std::fs::write(dir.join("ext.cnf"), "authorityKeyIdentifier=keyid\nsubjectAltName=DNS:broker.example.org\n")
        .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "l.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "90",
        "-extfile",
        "ext.cnf",
        "-outform",
        "DER",
        "-out",
        "leaf.der",
    ]);
    std::fs::read(dir.join("leaf.der")).unwrap()
}

#[test]
fn renewal_information_is_read_and_decides_the_renewal_time() {
    let dir = tempfile::tempdir().unwrap();
    let root = Root::new(dir.path());
    let ca = FakeCa {
        ari: Some(("2026-12-01T00:00:00Z", "2026-12-03T00:00:00Z")),
        profiles: false,
        refuse_replaces: false,
        paused: false,
        seen: Arc::default(),
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let acct = rt.block_on(account(&ca, &root));
    let der = leaf_der(dir.path());
    let ((start, end), retry) = rt.block_on(acme::renewal_window(&acct, &der)).unwrap().expect("the CA offers ARI");
    assert_eq!((start, end), (1_796_083_200, 1_796_256_000));
    assert_eq!(retry, 21_600, "ask again after the CA's Retry-After");
    let paths = &ca.seen.lock().unwrap().renewal_info_paths;
    assert_eq!(paths.len(), 1);
    assert!(
        paths[0].starts_with("/renewal-info/") && paths[0].contains('.'),
        "RFC 9773 id is AKI.serial: {}",
        paths[0]
    );
    // The window drives the decision: before it nothing is due, inside it (at the chosen point) it is.
    let info = hostd::host::certs::leaf_of_pem(&pem(&der)).unwrap();
    let cert = Cert { not_before: info.not_before, not_after: info.not_after, ari: Some((start, end)) };
    let r = acme_policy::renewal_time(&cert, start - 86_400, 0.5);
    assert_eq!(r.at, start + (end - start) / 2);
    assert!(r.why.contains("ARI window"));

    // A CA without ARI: no window, the lifetime rule stays in charge.
    let plain = FakeCa { ari: None, profiles: false, refuse_replaces: false, paused: false, seen: Arc::default() };
    let root2 = tempfile::tempdir().unwrap();
    let acct2 = rt.block_on(account(&plain, &Root::new(root2.path())));
    assert_eq!(rt.block_on(acme::renewal_window(&acct2, &der)).unwrap(), None);
}

fn pem(der: &[u8]) -> String {
    let b64 = base64::prelude::BASE64_STANDARD.encode(der);
    let body: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
    format!("-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n", body.join("\n"))
}

#[test]
fn a_profile_is_requested_only_when_offered_and_rate_limits_set_the_next_attempt() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    for offered in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path());
        let ca = FakeCa { ari: None, profiles: offered, refuse_replaces: false, paused: false, seen: Arc::default() };
        let acct = rt.block_on(account(&ca, &root));
        let (profile, note) = acme::pick_profile(&acct, Some("tlsserver"));
        assert_eq!(profile.is_some(), offered);
        assert_eq!(note.is_some(), !offered, "falling back is reported");
        let failed =
            rt.block_on(acme::issue(&acct, &root, "broker.example.org", profile, None)).expect_err("rate limited");
        let payload = ca.seen.lock().unwrap().order_payloads[0].clone();
        assert_eq!(payload["profile"].as_str(), offered.then_some("tlsserver"), "{payload}");
        assert_eq!(failed.class, "rateLimited");
        assert_eq!(failed.retry_after, Some(1_796_032_800), "2026-11-30 10:00:00 UTC from the CA's answer");
        // The ledger honours it: no order before then, even though the usual backoff is an hour.
        let now = 1_795_900_000;
        let ledger = acme_policy::record_failure(None, now, &failed.class, failed.retry_after);
        assert!(acme_policy::may_order(Some(&ledger), now + 3_600).is_err());
        assert!(acme_policy::may_order(Some(&ledger), 1_796_032_800).is_ok());
    }
}

#[test]
fn a_renewal_order_names_what_it_replaces_and_a_refusal_falls_back_once() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let leaf = leaf_der(dir.path());
    let id =
        instant_acme::CertificateIdentifier::try_from(&rustls::pki_types::CertificateDer::from(leaf.clone())).unwrap();
    let expected = format!("{}.{}", id.authority_key_identifier, id.serial);
    for refuse in [false, true] {
        let root_dir = tempfile::tempdir().unwrap();
        let root = Root::new(root_dir.path());
        let ca = FakeCa {
            ari: Some(("2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z")),
            profiles: false,
            refuse_replaces: refuse,
            paused: false,
            seen: Arc::default(),
        };
        let acct = rt.block_on(account(&ca, &root));
        // The fake CA then rate-limits every order: what matters here is what each order said.
        let failed =
            rt.block_on(acme::issue(&acct, &root, "broker.example.org", None, Some(&leaf))).expect_err("limited");
        assert_eq!(failed.class, "rateLimited", "the fallback order went out: {failed}");
        let orders = ca.seen.lock().unwrap().order_payloads.clone();
        let sent: Vec<Option<&str>> = orders.iter().map(|o| o["replaces"].as_str()).collect();
        if refuse {
            assert_eq!(sent, [Some(expected.as_str()), None], "refused once, then once without");
        } else {
            assert_eq!(sent, [Some(expected.as_str())], "one order, naming the certificate it replaces");
        }
    }
    // A first certificate names nothing.
    let root_dir = tempfile::tempdir().unwrap();
    let root = Root::new(root_dir.path());
    let ca = FakeCa { ari: None, profiles: false, refuse_replaces: true, paused: false, seen: Arc::default() };
    let acct = rt.block_on(account(&ca, &root));
    let _ = rt.block_on(acme::issue(&acct, &root, "broker.example.org", None, None));
    let orders = ca.seen.lock().unwrap().order_payloads.clone();
    assert_eq!(orders.len(), 1);
    assert!(orders[0].get("replaces").is_none());
}

#[test]
fn a_paused_host_is_held_with_the_cas_unpause_url_until_the_operator_clears_it() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = Root::new(dir.path());
    let ca = FakeCa { ari: None, profiles: false, refuse_replaces: false, paused: true, seen: Arc::default() };
    let acct = rt.block_on(account(&ca, &root));
    let failed = rt.block_on(acme::issue(&acct, &root, "broker.example.org", None, None)).expect_err("paused");
    assert_eq!((failed.class.as_str(), failed.unpause_url.as_deref()), ("rateLimited", Some(UNPAUSE)));
    assert_eq!(failed.retry_after, None, "Let's Encrypt names no end to a pause");
    let now = 1_795_900_000;
    let ledger = acme_policy::record_failure(None, now, &failed.class, failed.retry_after);
    let ledger = acme_policy::Ledger { unpause_url: failed.unpause_url.clone(), ..ledger };
    for later in [3_600, 86_400, 30 * 86_400] {
        let held = acme_policy::may_order(Some(&ledger), now + later).expect_err("held until cleared");
        assert!(held.to_string().contains(UNPAUSE), "{held}");
    }
    let text = serde_json::to_string(&ledger).unwrap();
    assert!(text.contains(UNPAUSE), "the ledger keeps the URL: {text}");
}
