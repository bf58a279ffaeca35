//! Benchmark, run from one process on a real-systemd container (tests/bench/run.sh):
//! * no-op `reconcile` wall time on a converged host with the escrow on, median and spread of N
//!   runs (goal ≤ 0.1 s; moto's Secrets Manager is frozen during them, so an AWS call would show);
//! * restarts caused by a one-env change, against the old script's restart-everything (10).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

#[path = "../common/mod.rs"]
mod common;

use std::time::Instant;

use common::container::Container;

const RUNS: usize = 15;

fn main() {
    let moto = common::moto::Moto::start_in_netns();
    let config = common::BASE_CONFIG.replace("enabled = false", "enabled = true");
    let c = Container::boot_in_netns(&config, moto.netns.as_deref().unwrap());
    let aws: Vec<String> = moto.env().iter().map(|(k, v)| format!("{k}={v}")).collect();
    let reconcile = |extra: &[&str]| {
        let mut args: Vec<&str> = vec!["env"];
        args.extend(aws.iter().map(String::as_str));
        args.extend(["/usr/bin/agentkeys-hostd", "reconcile", "--no-acme", "--json"]);
        args.extend(extra);
        c.exec(&args)
    };
    let first = reconcile(&["--ci", "--slot", "2", "--zone", "litentry.org", "--account-id", common::ACCOUNT]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert_eq!(first.json()["escrow"], "in_sync", "{}", first.stdout);
    let mut times = Vec::new();
    moto.freeze(true);
    for _ in 0..RUNS {
        let t = Instant::now();
        let run = reconcile(&[]);
        times.push(t.elapsed().as_secs_f64());
        assert_eq!(run.json()["changed"], 0, "not a no-op: {}", run.stdout);
        assert_eq!(run.json()["escrow"], "in_sync", "a no-op asked AWS: {}", run.stdout);
    }
    moto.freeze(false);
    times.sort_by(f64::total_cmp);
    let median = times[RUNS / 2];
    println!(
        "no-op reconcile (escrow on, no AWS call), {RUNS} runs: median {:.3} s (min {:.3}, max {:.3}); goal <= 0.1 s: {}",
        median,
        times[0],
        times[RUNS - 1],
        common::goal(median <= 0.1)
    );
    c.write(
        "/etc/agentkeys/hostd.d/50-email.toml",
        "[services.agentkeys-worker-email.environment]\nRUST_LOG = \"debug\"\n",
    );
    let t = Instant::now();
    let run = reconcile(&[]);
    let secs = t.elapsed().as_secs_f64();
    let restarts = run.json()["restarts"].as_object().unwrap().len();
    println!(
        "one-env change: {restarts} restart(s) in {secs:.3} s, versus {} for the old restart-everything script (ratio {:.1}x fewer)",
        common::units().len(),
        common::units().len() as f64 / restarts.max(1) as f64
    );
}
