//! The health gate (spec §9): loopback `/healthz` of every enabled service with bounded retries, and
//! the broker's pairing-claim probe: a JSON POST without credentials must get 401 (the broker checks
//! the body's content type and shape before auth, so a body-less POST gets 415).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::decide::catalog::{Health, Service};

/// One HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

/// One request to 127.0.0.1 (loopback only, bounded in time).
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub port: u16,
    pub method: &'a str,
    pub path: &'a str,
    /// `Host` header; `127.0.0.1:<port>` when `None`.
    pub host: Option<&'a str>,
    /// A JSON body, sent with `Content-Type: application/json`.
    pub json: Option<&'a str>,
    pub timeout: Duration,
}

impl<'a> Request<'a> {
    pub fn get(port: u16, path: &'a str) -> Self {
        Request { port, method: "GET", path, host: None, json: None, timeout: Duration::from_secs(2) }
    }
}

/// The same with an explicit `Host` header (to reach one nginx vhost on loopback).
pub(crate) fn request_host(port: u16, method: &str, path: &str, host: &str) -> std::io::Result<Answer> {
    send(Request { method, host: Some(host), ..Request::get(port, path) })
}

/// A tiny HTTP/1.1 exchange.
pub fn send(r: Request) -> std::io::Result<Answer> {
    let mut s = TcpStream::connect_timeout(&([127, 0, 0, 1], r.port).into(), r.timeout)?;
    s.set_read_timeout(Some(r.timeout))?;
    s.set_write_timeout(Some(r.timeout))?;
    let host = r.host.map_or_else(|| format!("127.0.0.1:{}", r.port), str::to_owned);
    let (content_type, body) = match r.json {
        Some(j) => ("Content-Type: application/json\r\n", j),
        None => ("", ""),
    };
    write!(
        s,
        "{} {} HTTP/1.1\r\nHost: {host}\r\n{content_type}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        r.method,
        r.path,
        body.len()
    )?;
    let mut raw = Vec::new();
    s.take(64 * 1024).read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    Ok(Answer { status, body: body.to_owned() })
}

/// Is this answer healthy for the service's kind? `Err` says why not.
pub(crate) fn judge(health: Health, a: &Answer) -> Result<(), String> {
    if a.status != 200 {
        return Err(format!("/healthz answered HTTP {}", a.status));
    }
    let compact: String = a.body.chars().filter(|c| !c.is_whitespace()).collect();
    match health {
        Health::PlainOk if a.body.trim() == "ok" => Ok(()),
        Health::JsonOk if compact.contains("\"ok\":true") => Ok(()),
        Health::JsonReady if compact.contains("\"ready\":") => Ok(()),
        _ => Err(format!(
            "/healthz body {:?} is not what a healthy service answers",
            a.body.chars().take(80).collect::<String>()
        )),
    }
}

/// The result of the gate for one service.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub unit: String,
    pub ok: bool,
    pub detail: String,
}

/// Why a probe failed: nothing answered yet, or the service answered unhealthily.
enum ProbeError {
    NotAnswering(String),
    Unhealthy(String),
}

/// The pairing claim the broker must refuse for want of a session: well-formed, unauthenticated.
pub const CLAIM_PROBE_BODY: &str = r#"{"pairing_code":"hostd-probe","label":"hostd-probe"}"#;

/// What the broker's answer to the unauthenticated claim means.
pub(crate) fn judge_claim(status: u16) -> Result<(), String> {
    match status {
        401 => Ok(()),
        415 => Err("POST /v1/agent/pairing/claim answered 415: the broker did not take the probe as JSON".into()),
        400 | 422 => Err(format!("POST /v1/agent/pairing/claim answered {status}: the broker rejected the probe body")),
        s => Err(format!("POST /v1/agent/pairing/claim answered {s}, expected 401 (no session)")),
    }
}

fn probe(svc: &Service) -> Result<String, ProbeError> {
    let timeout = Duration::from_secs(svc.probe_timeout_secs);
    let a = send(Request { timeout, ..Request::get(svc.port, "/healthz") })
        .map_err(|e| ProbeError::NotAnswering(format!("127.0.0.1:{} /healthz: {e}", svc.port)))?;
    judge(svc.health, &a).map_err(ProbeError::Unhealthy)?;
    let mut detail = "healthy".to_owned();
    if svc.health == Health::JsonReady && a.body.replace(' ', "").contains("\"ready\":false") {
        detail = "degraded (ready: false)".into();
    }
    if svc.unit == "agentkeys-broker" {
        let req = Request {
            method: "POST",
            json: Some(CLAIM_PROBE_BODY),
            timeout,
            ..Request::get(svc.port, "/v1/agent/pairing/claim")
        };
        let claim = send(req).map_err(|e| ProbeError::NotAnswering(format!("pairing-claim probe: {e}")))?;
        judge_claim(claim.status).map_err(ProbeError::Unhealthy)?;
    }
    Ok(detail)
}

/// How long a service may keep answering unhealthily (e.g. HTTP 500) before the gate fails.
const ANSWERING_GRACE: Duration = Duration::from_secs(5);

/// Probe every enabled service until healthy or until `budget` runs out, each retried every 200 ms.
pub fn gate(budget: Duration, services: &[&Service]) -> Vec<Verdict> {
    let deadline = Instant::now() + budget;
    let mut out = Vec::new();
    for svc in services {
        let unit = format!("{}.service", svc.unit);
        // A service that answers, but wrongly, gets `ANSWERING_GRACE`; one that does not answer yet
        // (still starting) gets the whole budget.
        let mut answering_since: Option<Instant> = None;
        let verdict = loop {
            match probe(svc) {
                Ok(detail) => break Verdict { unit, ok: true, detail },
                Err(e) => {
                    let (answered, detail) = match e {
                        ProbeError::NotAnswering(d) => (false, d),
                        ProbeError::Unhealthy(d) => (true, d),
                    };
                    let since =
                        if answered { *answering_since.get_or_insert_with(Instant::now) } else { Instant::now() };
                    if Instant::now() >= deadline || (answered && since.elapsed() >= ANSWERING_GRACE) {
                        break Verdict { unit, ok: false, detail };
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        };
        out.push(verdict);
        if out.len() == 1 {
            crate::host::failpoints::hit("mid-health");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn judges_each_kind() {
        let a = |status, body: &str| Answer { status, body: body.into() };
        assert!(judge(Health::PlainOk, &a(200, "ok\n")).is_ok());
        assert!(judge(Health::PlainOk, &a(200, "okay")).is_err());
        assert!(judge(Health::PlainOk, &a(500, "ok")).is_err());
        assert!(judge(Health::JsonOk, &a(200, "{\"ok\": true}")).is_ok());
        assert!(judge(Health::JsonOk, &a(200, "{\"ok\": false}")).is_err());
        assert!(judge(Health::JsonReady, &a(200, "{\"ready\": false}")).is_ok(), "degraded is not down");
        assert!(judge(Health::JsonReady, &a(200, "{}")).is_err());
    }

    #[test]
    fn only_a_401_clears_the_claim_probe() {
        assert!(judge_claim(401).is_ok());
        for s in [200, 400, 404, 415, 422, 500] {
            assert!(judge_claim(s).is_err(), "{s}");
        }
        let body: serde_json::Value = serde_json::from_str(CLAIM_PROBE_BODY).expect("JSON");
        assert!(body["pairing_code"].is_string() && body["label"].is_string(), "the fields the broker requires");
    }
}
