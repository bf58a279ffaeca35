//! The health gate (spec §9): loopback `/healthz` of every enabled service with bounded retries, and
//! the broker's pairing-claim probe (401 expected; 404 means a binary without `auth-email-link`).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::catalog::{Health, SERVICES, Service};

/// One HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

/// A tiny HTTP/1.1 request to 127.0.0.1 (loopback only, bounded in time).
pub fn request(port: u16, method: &str, path: &str) -> std::io::Result<Answer> {
    request_host(port, method, path, &format!("127.0.0.1:{port}"))
}

/// The same with an explicit `Host` header (to reach one nginx vhost on loopback).
pub fn request_host(port: u16, method: &str, path: &str, host: &str) -> std::io::Result<Answer> {
    let timeout = Duration::from_secs(2);
    let mut s = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    write!(s, "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?;
    let mut raw = Vec::new();
    s.take(64 * 1024).read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    Ok(Answer { status, body: body.to_owned() })
}

/// Is this answer healthy for the service's kind? `Err` says why not.
pub fn judge(health: Health, a: &Answer) -> Result<(), String> {
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

fn probe(svc: &Service) -> Result<String, ProbeError> {
    let a = request(svc.port, "GET", "/healthz")
        .map_err(|e| ProbeError::NotAnswering(format!("127.0.0.1:{} /healthz: {e}", svc.port)))?;
    judge(svc.health, &a).map_err(ProbeError::Unhealthy)?;
    let mut detail = "healthy".to_owned();
    if svc.health == Health::JsonReady && a.body.replace(' ', "").contains("\"ready\":false") {
        detail = "degraded (ready: false)".into();
    }
    if svc.unit == "agentkeys-broker" {
        let claim = request(svc.port, "POST", "/v1/agent/pairing/claim")
            .map_err(|e| ProbeError::NotAnswering(format!("pairing-claim probe: {e}")))?;
        match claim.status {
            401 => {}
            404 => {
                return Err(ProbeError::Unhealthy(
                    "POST /v1/agent/pairing/claim answered 404: a stale broker binary without auth-email-link".into(),
                ));
            }
            s => return Err(ProbeError::Unhealthy(format!("POST /v1/agent/pairing/claim answered {s}, expected 401"))),
        }
    }
    Ok(detail)
}

/// How long a service may keep answering unhealthily (e.g. HTTP 500) before the gate fails.
const ANSWERING_GRACE: Duration = Duration::from_secs(5);

/// Probe every service until healthy or until `budget` runs out, each retried every 200 ms.
pub fn gate(budget: Duration) -> Vec<Verdict> {
    let deadline = Instant::now() + budget;
    let mut out = Vec::new();
    for svc in SERVICES {
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
            crate::failpoints::hit("mid-health");
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
}
