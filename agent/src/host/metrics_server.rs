//! The daemon's background task (on the process's runtime): the Prometheus endpoint on loopback (hyper) and the signals
//! (`SIGHUP` → reconcile, `SIGTERM`/`SIGINT` → stop), both handed to the main loop as events.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};

use crate::decide::catalog::SERVICES;
use crate::decide::daemon::record::DaemonRecord;
use crate::host::systemd::Systemd;

/// How long a stop waits for a running reconcile to end.
const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(20);

/// What the background task tells the main loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Reload,
    Stop,
}

/// Every managed unit's ActiveState (empty when systemd cannot be asked).
async fn unit_states(systemd: bool) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if !systemd {
        return out;
    }
    let Ok(sd) = Systemd::connect().await else {
        return out;
    };
    for svc in SERVICES.iter().map(|s| format!("{}.service", s.unit)).chain(["nginx.service".to_owned()]) {
        // A unit systemd does not know (an optional service not shipped here) is left out.
        if let Ok(s) = sd.unit_state(&svc).await
            && (!s.unit_file_state.is_empty() || s.active_state != "inactive")
        {
            out.insert(svc, s.active_state);
        }
    }
    out
}

async fn answer(
    req: Request<hyper::body::Incoming>,
    record: Arc<Mutex<DaemonRecord>>,
    systemd: bool,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let reply = |status: StatusCode, body: String| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        r.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        r
    };
    if req.method() != hyper::Method::GET || req.uri().path() != "/metrics" {
        return Ok(reply(StatusCode::NOT_FOUND, "only GET /metrics is served here\n".into()));
    }
    let units = unit_states(systemd).await;
    let snapshot = record.lock().map(|r| r.clone()).unwrap_or_default();
    Ok(reply(StatusCode::OK, crate::decide::metrics::render(&snapshot, &units)))
}

async fn serve(listener: tokio::net::TcpListener, record: Arc<Mutex<DaemonRecord>>, systemd: bool) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let record = record.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| answer(req, record.clone(), systemd));
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, svc).await;
        });
    }
}

/// Spawn the task; returns once the signal handlers are installed and the listener is bound
/// (so a `SIGHUP` right after `READY=1` is never lost, and a taken port is reported at start).
pub fn start(
    rt: &tokio::runtime::Runtime,
    events: impl Fn(Signal) -> bool + Send + 'static,
    record: Arc<Mutex<DaemonRecord>>,
    listen: Option<SocketAddr>,
    systemd: bool,
) -> anyhow::Result<()> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<anyhow::Result<()>>();
    rt.spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let armed = (|| {
            let hup = signal(SignalKind::hangup()).context("failed to install the SIGHUP handler")?;
            let term = signal(SignalKind::terminate()).context("failed to install the SIGTERM handler")?;
            let int = signal(SignalKind::interrupt()).context("failed to install the SIGINT handler")?;
            anyhow::Ok((hup, term, int))
        })();
        let (mut hup, mut term, mut int) = match armed {
            Ok(s) => s,
            Err(e) => {
                let _ = ready_tx.send(Err(e));
                return;
            }
        };
        if let Some(addr) = listen {
            match tokio::net::TcpListener::bind(addr).await {
                Ok(l) => {
                    tokio::spawn(serve(l, record, systemd));
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(anyhow::anyhow!(
                        "failed to listen for metrics on {addr}: {e}; free the port or set daemon.metrics_listen"
                    )));
                    return;
                }
            }
        }
        let _ = ready_tx.send(Ok(()));
        loop {
            let sig = tokio::select! {
                _ = hup.recv() => Signal::Reload,
                _ = term.recv() => Signal::Stop,
                _ = int.recv() => Signal::Stop,
            };
            if !events(sig) {
                return;
            }
            if sig == Signal::Stop {
                // The main loop stops between runs. A run that does not end within the
                // grace time is cut short: every step is crash-safe (atomic writes, the
                // pending marker), and the next run finishes what it started.
                tokio::time::sleep(STOP_GRACE).await;
                tracing::warn!("stopping in the middle of a reconcile; the next run completes it");
                std::process::exit(0);
            }
        }
    });
    ready_rx.recv().context("the daemon's background task died while starting")?
}
