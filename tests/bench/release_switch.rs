//! Benchmark: `/healthz` outages during a release switch on a real-systemd host, sampled every
//! 50 ms from inside it: an unchanged service (goal: never down) and the upgraded one (goal ≤ 2 s).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

#[path = "../common/mod.rs"]
mod common;

use common::container::Container;

/// Longest run of failed samples, in milliseconds, from "<ms> <port> <ok|down>" lines.
fn longest_outage(samples: &str, port: &str) -> (u64, usize) {
    let mut worst = 0;
    let mut down_since: Option<u64> = None;
    let mut n = 0;
    for line in samples.lines() {
        let mut f = line.split_whitespace();
        let (Some(t), Some(p), Some(state)) = (f.next(), f.next(), f.next()) else { continue };
        if p != port {
            continue;
        }
        n += 1;
        let t: u64 = t.parse().unwrap_or(0);
        match (state, down_since) {
            ("down", None) => down_since = Some(t),
            ("ok", Some(s)) => {
                worst = worst.max(t - s);
                down_since = None;
            }
            _ => {}
        }
    }
    (worst, n)
}

fn main() {
    let c = Container::boot(common::BASE_CONFIG);
    common::bundle::write(&c.path("/root/a"), "1.0.0", "aaaaaaaaaaaaaaaa", &[]);
    common::bundle::write(&c.path("/root/b"), "1.1.0", "bbbbbbbbbbbbbbbb", &[("agentkeys-worker-email", b"\0b")]);
    let first = c.reconcile(&[
        "--ci",
        "--slot",
        "2",
        "--zone",
        "litentry.org",
        "--account-id",
        common::ACCOUNT,
        "--release",
        "/root/a",
    ]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    let sampler = r#"while :; do for p in 9092 9093; do
        if (exec 3<>/dev/tcp/127.0.0.1/$p && printf 'GET /healthz HTTP/1.0\r\n\r\n' >&3 && head -c 12 <&3 | grep -q 200) 2>/dev/null;
        then s=ok; else s=down; fi; echo "$(( $(date +%s%N) / 1000000 )) $p $s"; done; sleep 0.05; done >/root/samples"#;
    let mut child = c.spawn(&["bash", "-c", sampler], &[]);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let run = c.reconcile(&["--release", "/root/b"]);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let _ = child.kill();
    let _ = child.wait();
    c.exec(&["pkill", "-f", "/root/samples"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let samples = String::from_utf8(c.read("/root/samples")).unwrap();
    let (unchanged, n1) = longest_outage(&samples, "9092");
    let (upgraded, n2) = longest_outage(&samples, "9093");
    println!("release switch, /healthz sampled every 50 ms inside the host:");
    println!(
        "  unchanged service (worker-audit): longest outage {unchanged} ms over {n1} samples (goal 0: {})",
        common::goal(unchanged == 0)
    );
    println!(
        "  upgraded service (worker-email):  longest outage {upgraded} ms over {n2} samples (goal <= 2000 ms: {})",
        common::goal(upgraded <= 2000)
    );
}
