//! The one clock: `main` makes a [`SystemClock`], the run and the daemon read time only through
//! it, and the deciding code takes `now` as a parameter.

use std::time::{SystemTime, UNIX_EPOCH};

/// Wall-clock time.
pub trait Clock: Send + Sync {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;

    /// Whole seconds since the Unix epoch.
    fn now_unix(&self) -> i64 {
        self.now_ms().div_euclid(1000)
    }
}

/// The system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }
}

/// A clock the tests set.
#[cfg(test)]
#[derive(Debug, Default)]
pub(crate) struct FixedClock(pub std::sync::atomic::AtomicI64);

#[cfg(test)]
impl Clock for FixedClock {
    fn now_ms(&self) -> i64 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_round_down() {
        let c = FixedClock(1_999.into());
        assert_eq!(c.now_unix(), 1);
        assert!(SystemClock.now_unix() > 1_700_000_000);
    }
}
