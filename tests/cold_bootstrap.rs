//! Cold bootstraps against an unforgiving CA, and the nginx reload that returns only once it has
//! taken effect. Each bootstrap boots a fresh real-systemd container, starts Pebble in its default
//! mode (5 % of nonces rejected with `badNonce`, every validation after a random delay) and runs
//! `reconcile` with certificates: every run must exit 0 with all 8 certificates issued and no
//! `unauthorized`. CI runs `AGENTKEYS_BOOTSTRAPS` (default 5) of them; `tests/bench/stress.sh`
//! runs 50 beside a CPU load. The reload test freezes nginx's master (SIGSTOP) so its reload
//! cannot take effect: hostd must wait for it, and name nginx when it never does.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::container::Container;
use common::in_container::{ACME, FORGIVING, start_pebble_exactly};
use common::{ACCOUNT, BASE_CONFIG};

/// Pebble's mode: its default (unforgiving) unless `AGENTKEYS_PEBBLE=forgiving` (no validation
/// delay, no nonce rejection: the demo's setup, where validation follows the reload at once and a
/// reload that has not taken effect is most exposed).
fn pebble_env() -> Vec<&'static str> {
    match std::env::var("AGENTKEYS_PEBBLE").as_deref() {
        Ok("forgiving") => FORGIVING.to_vec(),
        _ => Vec::new(),
    }
}

/// `text` without terminal colour sequences (the log colours its field names).
fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(ch) = chars.next() {
        if ch == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(ch);
        }
    }
    out
}

/// One cold bootstrap: (exit code, certificates issued, `unauthorized` seen, seconds).
fn bootstrap(i: usize) -> (i32, usize, usize, f64) {
    let c = Container::boot(&format!("{BASE_CONFIG}\n{ACME}\n"));
    let dir = tempfile::tempdir().unwrap();
    start_pebble_exactly(&c, dir.path(), 80, None, &pebble_env());
    let slot = (2 + i % 7).to_string();
    let started = Instant::now();
    let run = c.exec(&[
        "env",
        "AGENTKEYS_HOSTD_LOG=warn,hostd::host::nginx=info",
        "/usr/bin/agentkeys-hostd",
        "reconcile",
        "--json",
        "--ci",
        "--slot",
        &slot,
        "--zone",
        "example.org",
        "--account-id",
        ACCOUNT,
    ]);
    let secs = started.elapsed().as_secs_f64();
    // What the reloads waited for their new workers (hostd logs each wait).
    let waits: Vec<u64> = plain(&run.stderr)
        .lines()
        .filter(|l| l.contains("nginx reload took effect"))
        .filter_map(|l| l.split("took_ms=").nth(1)?.split_whitespace().next()?.parse().ok())
        .collect();
    if !waits.is_empty() {
        eprintln!("  reload waits (ms): {waits:?}");
    }
    let issued = serde_json::from_str::<serde_json::Value>(run.stdout.lines().next().unwrap_or("{}"))
        .ok()
        .and_then(|s| {
            s["tls"]
                .as_object()
                .map(|t| t.values().filter(|v| v.as_str().is_some_and(|v| v.starts_with("issued"))).count())
        })
        .unwrap_or(0);
    let unauthorized = run.stdout.matches("unauthorized").count() + run.stderr.matches("unauthorized").count();
    if run.code != 0 {
        eprintln!("bootstrap {i} exited {}:\n{}\n{}", run.code, run.stdout, run.stderr);
    }
    (run.code, issued, unauthorized, secs)
}

#[test]
fn cold_bootstraps_against_an_unforgiving_ca() {
    let n: usize = std::env::var("AGENTKEYS_BOOTSTRAPS").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
    let mut failed = 0;
    let mut unauthorized = 0;
    let mut times = Vec::new();
    for i in 0..n {
        let (code, issued, unauth, secs) = bootstrap(i);
        eprintln!("bootstrap {:>2}/{n}: exit {code}, {issued}/8 issued, {unauth} unauthorized, {secs:.1} s", i + 1);
        failed += usize::from(code != 0 || issued != 8);
        unauthorized += unauth;
        times.push(secs);
    }
    times.sort_by(f64::total_cmp);
    let median = times.get(times.len() / 2).copied().unwrap_or_default();
    let max = times.last().copied().unwrap_or_default();
    let mode = if pebble_env().is_empty() { "default mode" } else { "forgiving mode" };
    eprintln!(
        "cold bootstraps (Pebble {mode}): {n} runs, {failed} failed, {unauthorized} unauthorized; reconcile median {median:.1} s, max {max:.1} s"
    );
    assert_eq!((failed, unauthorized), (0, 0), "{n} cold bootstraps");
}

#[test]
fn a_reload_returns_only_once_the_new_workers_serve() {
    let c = Container::boot(BASE_CONFIG);
    let first = c.reconcile(&["--ci", "--slot", "4", "--zone", "litentry.org", "--account-id", ACCOUNT]);
    assert_eq!(first.code, 0, "{}\n{}", first.stdout, first.stderr);
    let master = c.exec(&["cat", "/run/nginx.pid"]).stdout.trim().to_owned();
    // A change to every vhost (the placeholders included): listen on IPv6 or not.
    let ipv6 = |on: bool| format!("[nginx]\nipv6 = {on}\n");
    let vhost = "/etc/nginx/sites-available/broker-test-4.litentry.org.conf";

    // Frozen for 2 s: the reload job ends at once, the old workers keep the old vhosts; the run
    // returns only after the master has started new workers.
    assert_eq!(c.exec(&["kill", "-STOP", &master]).code, 0);
    let mut thaw = c.spawn(&["sh", "-c", &format!("sleep 2; kill -CONT {master}")], &[]);
    c.write("/etc/agentkeys/hostd.d/60-ipv6.toml", &ipv6(false));
    let started = Instant::now();
    let run = c.reconcile(&[]);
    let took = started.elapsed();
    thaw.wait().unwrap();
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(!String::from_utf8(c.read(vhost)).unwrap().contains("[::]"), "the vhost changed: {}", run.stdout);
    assert!(took >= Duration::from_secs(2), "the run returned after {took:?}, before nginx reloaded");
    eprintln!("with the master frozen for 2 s, the run took {} ms", took.as_millis());

    // Frozen for good: the run fails within the wait's bound, naming nginx.
    assert_eq!(c.exec(&["kill", "-STOP", &master]).code, 0);
    c.write("/etc/agentkeys/hostd.d/60-ipv6.toml", &ipv6(true));
    let started = Instant::now();
    let stuck = c.reconcile(&[]);
    let took = started.elapsed();
    assert_eq!(c.exec(&["kill", "-CONT", &master]).code, 0);
    assert_ne!(stuck.code, 0, "a reload that never took effect passed:\n{}", stuck.stdout);
    let said = format!("{}{}", stuck.stdout, stuck.stderr);
    assert!(said.contains("nginx did not take its new configuration"), "{said}");
    assert!(took < Duration::from_secs(30), "bounded: {took:?}");
    eprintln!("with the master frozen for good, the run failed after {} ms", took.as_millis());
    let again = c.reconcile(&[]);
    assert_eq!(again.code, 0, "after the thaw: {}\n{}", again.stdout, again.stderr);
}
