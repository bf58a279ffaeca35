//! Benchmark of the daemon on a real-systemd container (tests/bench/run.sh), release build:
//! * time from `systemctl start` to READY (Type=notify: the start job ends at READY=1), and the
//!   daemon's own start-to-READY figure;
//! * RSS after 60 s idle (goal ≤ 20 MiB) and CPU time used over those 60 s (goal ≤ 0.1 s).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

#[path = "../common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::container::Container;

const IDLE: Duration = Duration::from_secs(60);

/// utime + stime of `pid` in seconds (clock ticks of 10 ms).
fn cpu_secs(c: &Container, pid: &str) -> f64 {
    let stat = std::fs::read_to_string(c.path(&format!("/proc/{pid}/stat"))).unwrap();
    let fields: Vec<&str> = stat.rsplit_once(") ").unwrap().1.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

fn rss_mib(c: &Container, pid: &str) -> f64 {
    let status = std::fs::read_to_string(c.path(&format!("/proc/{pid}/status"))).unwrap();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .unwrap()
        .trim()
        .trim_end_matches(" kB")
        .trim()
        .parse()
        .unwrap();
    kb / 1024.0
}

fn main() {
    let c = Container::boot(common::BASE_CONFIG);
    let first = c.reconcile(&["--ci", "--slot", "2", "--zone", "litentry.org", "--account-id", common::ACCOUNT]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    let unit = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../units/agentkeys-hostd.service");
    c.install(unit.to_str().unwrap(), "/etc/systemd/system/agentkeys-hostd.service");
    // No CA in this benchmark: the daemon runs without certificates.
    c.write(
        "/etc/systemd/system/agentkeys-hostd.service.d/bench.conf",
        "[Service]\nExecStart=\nExecStart=/usr/bin/agentkeys-hostd daemon --no-acme\n",
    );
    assert_eq!(c.exec(&["systemctl", "daemon-reload"]).code, 0);
    let t = Instant::now();
    let start = c.exec(&["systemctl", "start", "agentkeys-hostd"]);
    let to_ready = t.elapsed();
    assert_eq!(start.code, 0, "{}", start.stderr);
    let pid = c.exec(&["systemctl", "show", "-p", "MainPID", "--value", "agentkeys-hostd"]).stdout.trim().to_owned();
    let record = || -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(c.path("/run/agentkeys-hostd/daemon.json")).unwrap_or_default())
            .unwrap_or_default()
    };
    // Let the start reconcile finish, then measure an idle minute.
    let deadline = Instant::now() + Duration::from_secs(60);
    while record()["reconciles"]["start"] != 1 {
        assert!(Instant::now() < deadline, "the start reconcile did not finish");
        std::thread::sleep(Duration::from_millis(100));
    }
    let rec = record();
    assert_eq!(rec["last"]["exit_code"], 0, "{rec:#}");
    let ready_ms = rec["ready_ms"].as_u64().unwrap();
    let cpu_before = cpu_secs(&c, &pid);
    std::thread::sleep(IDLE);
    let cpu = cpu_secs(&c, &pid) - cpu_before;
    let rss = rss_mib(&c, &pid);
    assert_eq!(
        c.exec(&["systemctl", "show", "-p", "MainPID", "--value", "agentkeys-hostd"]).stdout.trim(),
        pid,
        "the daemon did not restart during the measurement"
    );
    println!(
        "daemon start to READY: {} ms by systemctl start (Type=notify), {ready_ms} ms measured by the daemon",
        to_ready.as_millis()
    );
    println!(
        "daemon RSS after {} s idle: {rss:.1} MiB; goal <= 20 MiB: ratio {:.2} ({})",
        IDLE.as_secs(),
        rss / 20.0,
        common::goal(rss <= 20.0)
    );
    println!(
        "daemon CPU over {} s idle: {cpu:.2} s; goal <= 0.1 s: ratio {:.2} ({})",
        IDLE.as_secs(),
        cpu / 0.1,
        common::goal(cpu <= 0.1)
    );
}
