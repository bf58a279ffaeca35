//! Crash points for the reliability tests: with the `failpoints` feature, a run whose
//! `AGENTKEYS_HOSTD_FAILPOINT` names the point kills itself there with SIGKILL. Without the feature
//! this compiles to nothing.

/// Die here if the tests asked for it.
#[cfg(feature = "failpoints")]
pub fn hit(name: &str) {
    if std::env::var("AGENTKEYS_HOSTD_FAILPOINT").is_ok_and(|v| v == name) {
        eprintln!("failpoint {name}: killing this run");
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
}

#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn hit(_name: &str) {}
