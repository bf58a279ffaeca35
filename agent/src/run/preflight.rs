//! `doctor`'s pre-flight facts (spec §10), gathered read-only: `nginx -t`, port 80, the units
//! through `systemd-analyze verify`, free disk, the trust store, the ACME directory and the clock
//! against its `Date`, and DNS per public host (the certificate step's own facts). Each is judged
//! by the pure `decide::doctor`.

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::decide::doctor::{self, Check, Verdict};
use crate::decide::{catalog, config, paths};
use crate::host::clock::Clock;
use crate::host::dns_facts::{DnsFacts, NO_RESOLVER};
use crate::host::fs::Root;
use crate::host::{observe, system_command};
use crate::run::prepare;

/// Every check, in the order `doctor` prints them.
pub(crate) fn checks(rt: &tokio::runtime::Runtime, clock: &dyn Clock, root: &Root) -> anyhow::Result<Vec<Check>> {
    let platform = crate::host::platform::detect(root)?;
    let mut checks = vec![Check::new("platform", Verdict::Pass, platform.summary())];
    checks.extend([nginx(), port_80(), units_lint(root, platform.systemd_version)]);
    checks.extend([disk(root, "/var/lib"), disk(root, "/opt")]);
    checks.push(trust_store(root));
    let optional = prepare::presence_on(root).into_iter().filter(|(s, _)| s.optional);
    checks.extend(optional.filter_map(|(s, p)| doctor::optional_service(s.unit, &p)));
    let cfg = config::load(&observe::config_files(root)?);
    match cfg {
        Ok(cfg) => match crate::decide::settings::resolve_acme(&cfg) {
            Ok(acme) => {
                checks.extend(acme_and_clock(rt, clock, root, &acme));
                let req = prepare::Request::default();
                let tls = prepare::read_inputs(root, &req)
                    .ok()
                    .and_then(|i| i.deployed)
                    .map(|d| observe::tls_states(root, &d.identity, prepare::services_on(root)))
                    .unwrap_or_default();
                let hosts: Vec<String> = tls.keys().cloned().collect();
                checks.extend(dns_checks(rt, root, &acme, &hosts));
                if root.is_real_root() {
                    checks.extend(served_checks(root, &tls));
                    checks.push(profile_check(&cfg, &tls));
                }
                let now = clock.now_unix();
                match crate::host::tls::schedule(root, &tls, now) {
                    Ok(schedule) => {
                        checks.extend(schedule.iter().filter_map(|s| doctor::certificate(s, now)));
                        checks.extend(schedule.iter().filter_map(doctor::pause));
                    }
                    Err(e) => checks.push(Check::new("certificates", Verdict::Fail, format!("{e:#}"))),
                }
            }
            Err(e) => checks.push(Check::new("config", Verdict::Fail, e.to_string())),
        },
        Err(e) => checks.push(Check::new("config", Verdict::Fail, e.to_string())),
    }
    checks.push(match crate::host::state::read(root) {
        Ok(state) => doctor::last_run(state.last_run.as_ref(), clock.now_unix()),
        Err(e) => Check::new("last run", Verdict::Fail, format!("{e:#}")),
    });
    checks.push(match crate::run::escrow_view::gather(rt, root, clock.now_unix(), true) {
        Ok(view) => crate::run::escrow_view::doctor_check(&view),
        Err(e) => Check::new("escrow", Verdict::Fail, format!("{e:#}")),
    });
    Ok(checks)
}

/// Each host with a certificate installed (hostd's or adopted): nginx serves exactly it on 443.
fn served_checks(root: &Root, tls: &std::collections::BTreeMap<String, crate::decide::render::TlsState>) -> Vec<Check> {
    tls.iter()
        .filter_map(|(host, state)| match state {
            crate::decide::render::TlsState::Https { cert, .. } => Some((host, cert)),
            crate::decide::render::TlsState::HttpPlaceholder => None,
        })
        .map(|(host, cert)| {
            let outcome = crate::host::certs::read_leaf(&root.path(cert))
                .and_then(|installed| {
                    crate::host::tls_proof::served_leaf(443, host).map(|served| served == installed.leaf_der)
                })
                .map_err(|e| format!("{e:#}"));
            doctor::served(host, outcome)
        })
        .collect()
}

/// What every HTTPS host serves, against the configured TLS profile: each of the profile's probes
/// (a protocol below its floor, suites and groups outside it) must be refused.
fn profile_check(
    cfg: &config::Config,
    tls: &std::collections::BTreeMap<String, crate::decide::render::TlsState>,
) -> Check {
    use crate::decide::tls_probe;
    let profile = match crate::decide::settings::tls_profile(cfg) {
        Ok(p) => p,
        Err(e) => return Check::new("tls profile", Verdict::Fail, e.to_string()),
    };
    let probes = tls_probe::probes(profile);
    let hosts: Vec<(String, Option<String>)> = tls
        .iter()
        .filter(|(_, s)| matches!(s, crate::decide::render::TlsState::Https { .. }))
        .map(|(host, _)| {
            let results: Vec<_> = probes
                .iter()
                .map(|p| {
                    let got = crate::host::tls_proof::probe(443, host, &p.hello).map_err(|e| format!("{e:#}"));
                    (p.clone(), got.map(|b| tls_probe::answer(&b)))
                })
                .collect();
            (host.clone(), tls_probe::judge_host(&results))
        })
        .collect();
    tls_probe::check(profile, &hosts)
}

/// The same `nginx -t` rule as every reconcile (a `[warn]` fails here too).
fn nginx() -> Check {
    match crate::host::nginx::test() {
        Ok(()) => Check::new("nginx", Verdict::Pass, "nginx -t: the configuration is valid"),
        Err(e) => Check::new("nginx", Verdict::Fail, e.to_string()),
    }
}

fn port_80() -> Check {
    let addr = SocketAddr::from(([127, 0, 0, 1], 80));
    match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
        Ok(_) => Check::new("port 80", Verdict::Pass, "127.0.0.1:80 accepts connections (HTTP-01 goes through it)"),
        Err(e) => Check::new(
            "port 80",
            Verdict::Fail,
            format!("127.0.0.1:80 refused ({e}): start nginx; ACME HTTP-01 validation needs it"),
        ),
    }
}

/// `systemd-analyze verify` of the managed units, with only the flags this systemd knows.
fn units_lint(root: &Root, systemd: Option<u32>) -> Check {
    let units: Vec<String> = catalog::SERVICES
        .iter()
        .map(|s| format!("{}/{}.service", paths::UNIT_DIR, s.unit))
        .filter(|p| root.path(p).exists())
        .collect();
    if units.is_empty() {
        return Check::new("units lint", Verdict::Warn, "no managed unit deployed yet (run reconcile)");
    }
    let mut cmd = system_command("systemd-analyze");
    cmd.args(crate::decide::platform::verify_args(systemd));
    if !root.is_real_root() {
        cmd.arg(format!("--root={}", root.path("/").display()));
    }
    match cmd.args(units.iter().map(|u| root.path(u))).output() {
        Err(_) => Check::new("units lint", Verdict::Warn, "systemd-analyze not found; units not linted"),
        Ok(o) => {
            let err = String::from_utf8_lossy(&o.stderr);
            let problems: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
            if o.status.success() && problems.is_empty() {
                Check::new("units lint", Verdict::Pass, format!("{} unit(s) pass systemd-analyze verify", units.len()))
            } else {
                Check::new("units lint", Verdict::Fail, format!("systemd-analyze verify: {}", problems.join("; ")))
            }
        }
    }
}

fn disk(root: &Root, path: &str) -> Check {
    let mut p = root.path(path);
    while !p.exists() {
        match p.parent() {
            Some(up) => p = up.to_path_buf(),
            None => break,
        }
    }
    match nix::sys::statvfs::statvfs(&p) {
        Ok(s) => doctor::disk(path, s.blocks_available().saturating_mul(s.fragment_size())),
        Err(e) => Check::new(format!("disk {path}"), Verdict::Fail, format!("statvfs {}: {e}", p.display())),
    }
}

/// The bundle the broker's native-roots loader reads (Debian's ca-certificates).
const TRUST_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

fn trust_store(root: &Root) -> Check {
    let certs =
        std::fs::read_to_string(root.path(TRUST_BUNDLE)).ok().map(|t| t.matches("-----BEGIN CERTIFICATE-----").count());
    doctor::trust_store(TRUST_BUNDLE, certs)
}

/// The ACME directory answers, and the clock agrees with the CA's `Date` header.
fn acme_and_clock(
    rt: &tokio::runtime::Runtime,
    clock: &dyn Clock,
    root: &Root,
    acme: &crate::decide::settings::AcmeSettings,
) -> Vec<Check> {
    let url = acme.directory_url.clone();
    let ca = acme.ca_bundle.as_ref().map(|p| root.path(p));
    let probe = async {
        let client = crate::host::download::https_client::<http_body_util::Empty<bytes::Bytes>>(ca.as_deref())?;
        let resp = tokio::time::timeout(Duration::from_secs(10), client.get(url.parse()?)).await??;
        let date = resp.headers().get(hyper::header::DATE).and_then(|v| v.to_str().ok().map(str::to_owned));
        anyhow::Ok((resp.status(), date))
    };
    let answer = rt.block_on(probe);
    match answer {
        Ok((status, date)) if status.is_success() => {
            let mut out = vec![Check::new("acme directory", Verdict::Pass, format!("{url} answered {status}"))];
            let skew = date.and_then(|d| {
                let fmt = time::format_description::well_known::Rfc2822;
                let theirs = time::OffsetDateTime::parse(&d, &fmt).ok()?.unix_timestamp();
                Some(clock.now_unix() - theirs)
            });
            out.push(match skew {
                Some(s) => doctor::clock(s),
                None => Check::new("clock", Verdict::Warn, "the ACME CA sent no Date header to compare with"),
            });
            out
        }
        Ok((status, _)) => vec![Check::new("acme directory", Verdict::Fail, format!("{url} answered {status}"))],
        Err(e) => vec![Check::new(
            "acme directory",
            Verdict::Fail,
            format!("{url} unreachable: {e:#}; check acme.directory_url, acme.ca_bundle and egress"),
        )],
    }
}

fn dns_checks(
    rt: &tokio::runtime::Runtime,
    root: &Root,
    acme: &crate::decide::settings::AcmeSettings,
    hosts: &[String],
) -> Vec<Check> {
    if hosts.is_empty() {
        return vec![Check::new("dns", Verdict::Warn, "no identity deployed yet: no public hosts to check")];
    }
    // The same facts, gathered the same way, as the certificate step's.
    let facts = rt.block_on(DnsFacts::gather(root, acme));
    let ip = match &facts.public_ip {
        Ok(ip) => *ip,
        Err(e) => {
            return vec![Check::new("dns", Verdict::Fail, format!("this machine's public IPv4 is unknown: {e}"))];
        }
    };
    if facts.resolver.is_none() {
        return vec![Check::new("dns", Verdict::Fail, NO_RESOLVER)];
    }
    hosts.iter().map(|h| doctor::dns(h, ip, facts.verdict(h))).collect()
}
