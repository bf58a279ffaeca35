//! Crash points for the reliability tests: with the `failpoints` feature, a run whose
//! `AGENTKEYS_HOSTD_FAILPOINT` names the point (`name`, or `name@N` for its N-th hit) kills itself
//! there with SIGKILL. Without the feature this compiles to nothing.
//!
//! Points: `write-temp` / `write-renamed` (each atomic write, before and after its rename),
//! `link-temp` (each symlink switch, before its rename), `after-files`, `after-daemon-reload`,
//! `mid-restarts`, `before-health`, `mid-health`, `after-health`, `cert-key-written` and
//! `cert-chain-written` (certificate install, before the `current` switch), `release-staged` and
//! `release-switched` (release switch, before and after `current` moves).

/// Which hit of a point to die on: `name` is the first, `name@N` the N-th.
#[cfg(any(feature = "failpoints", test))]
fn wanted(spec: &str, name: &str) -> Option<u32> {
    match spec.split_once('@') {
        Some((n, k)) if n == name => k.parse().ok().filter(|k| *k > 0),
        None if spec == name => Some(1),
        _ => None,
    }
}

/// Die here if the tests asked for it.
#[cfg(feature = "failpoints")]
pub(crate) fn hit(name: &str) {
    use std::sync::atomic::{AtomicU32, Ordering};
    static HITS: AtomicU32 = AtomicU32::new(0);
    let Some(nth) = std::env::var("AGENTKEYS_HOSTD_FAILPOINT").ok().and_then(|v| wanted(&v, name)) else {
        return;
    };
    if HITS.fetch_add(1, Ordering::SeqCst) + 1 == nth {
        eprintln!("failpoint {name}@{nth}: killing this run");
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
}

#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub(crate) fn hit(_name: &str) {}

#[cfg(test)]
mod tests {
    #[test]
    fn specs_name_a_point_and_a_hit() {
        assert_eq!(super::wanted("write-temp", "write-temp"), Some(1));
        assert_eq!(super::wanted("write-temp@7", "write-temp"), Some(7));
        assert_eq!(super::wanted("write-temp@0", "write-temp"), None);
        assert_eq!(super::wanted("write-temp@x", "write-temp"), None);
        assert_eq!(super::wanted("mid-health", "write-temp"), None);
    }
}
