//! Benchmark, run from one process on a real-systemd container (tests/bench/run.sh):
//! * no-op `reconcile` wall time on a converged host, median and spread of N runs (goal ≤ 0.5 s);
//! * restarts caused by a one-env change, against the old script's restart-everything (10).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

#[path = "../common/mod.rs"]
mod common;

use std::time::Instant;

use common::container::Container;

const RUNS: usize = 15;

fn main() {
    let c = Container::boot(common::BASE_CONFIG);
    let first = c.reconcile(&["--ci", "--slot", "2", "--zone", "litentry.org", "--account-id", common::ACCOUNT]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    let mut times = Vec::new();
    for _ in 0..RUNS {
        let t = Instant::now();
        let run = c.reconcile(&[]);
        times.push(t.elapsed().as_secs_f64());
        assert_eq!(run.json()["changed"], 0, "not a no-op: {}", run.stdout);
    }
    times.sort_by(f64::total_cmp);
    let median = times[RUNS / 2];
    println!(
        "no-op reconcile, {RUNS} runs: median {:.3} s (min {:.3}, max {:.3}); goal <= 0.5 s: {}",
        median,
        times[0],
        times[RUNS - 1],
        common::goal(median <= 0.5)
    );
    c.write(
        "/etc/agentkeys/hostd.d/50-email.toml",
        "[services.agentkeys-worker-email.environment]\nRUST_LOG = \"debug\"\n",
    );
    let t = Instant::now();
    let run = c.reconcile(&[]);
    let secs = t.elapsed().as_secs_f64();
    let restarts = run.json()["restarts"].as_object().unwrap().len();
    println!(
        "one-env change: {restarts} restart(s) in {secs:.3} s, versus {} for the old restart-everything script (ratio {:.1}x fewer)",
        common::units().len(),
        common::units().len() as f64 / restarts.max(1) as f64
    );
}
