//! When an nginx reload has taken effect. The reload job ends once the master has been signalled;
//! until the master has read the new configuration and started new workers, the old workers still
//! accept connections with the old vhosts. The reload has taken effect when every worker that
//! accepts connections is one that was not serving before it (old ones say "is shutting down":
//! they finish their connections but accept no new ones). Pure: `host::nginx` reads the master's
//! children from /proc.

use std::time::Duration;

/// How long a reload may take to take effect before the run stops naming nginx.
pub const SETTLE_BUDGET: Duration = Duration::from_secs(10);

/// How often the master's children are looked at while waiting.
pub const SETTLE_POLL: Duration = Duration::from_millis(10);

/// One child of the nginx master, by its process title.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Child {
    /// `nginx: worker process`: accepts connections.
    Serving,
    /// `nginx: worker process is shutting down`: an old worker finishing its connections.
    ShuttingDown,
    /// The cache manager or loader, or anything else.
    Other,
}

/// What a child's title (its `/proc/PID/cmdline`, NULs as spaces) says it is.
pub fn child_kind(title: &str) -> Child {
    let t = title.trim();
    if t.starts_with("nginx: worker process is shutting down") {
        Child::ShuttingDown
    } else if t.starts_with("nginx: worker process") {
        Child::Serving
    } else {
        Child::Other
    }
}

/// The workers serving now that also served before the reload.
pub fn stale(before: &[u32], now: &[(u32, Child)]) -> Vec<u32> {
    now.iter().filter(|(pid, kind)| *kind == Child::Serving && before.contains(pid)).map(|(pid, _)| *pid).collect()
}

/// The reload has taken effect: some worker serves, and none of the serving ones is from before.
pub fn settled(before: &[u32], now: &[(u32, Child)]) -> bool {
    now.iter().any(|(_, kind)| *kind == Child::Serving) && stale(before, now).is_empty()
}

/// The serving workers' pids (what `before` holds).
pub fn serving(now: &[(u32, Child)]) -> Vec<u32> {
    now.iter().filter(|(_, kind)| *kind == Child::Serving).map(|(pid, _)| *pid).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles() {
        assert_eq!(child_kind("nginx: worker process"), Child::Serving);
        assert_eq!(child_kind("nginx: worker process                 "), Child::Serving);
        assert_eq!(child_kind("nginx: worker process is shutting down"), Child::ShuttingDown);
        assert_eq!(child_kind("nginx: cache manager process"), Child::Other);
        assert_eq!(child_kind(""), Child::Other);
    }

    #[test]
    fn only_new_workers_serving_is_settled() {
        use Child::*;
        let before = [10, 11];
        // Signalled, not yet reloaded: the old workers still serve.
        assert!(!settled(&before, &[(10, Serving), (11, Serving)]));
        // New workers up, one old one not yet told to stop.
        assert!(!settled(&before, &[(10, Serving), (11, ShuttingDown), (20, Serving), (21, Serving)]));
        assert_eq!(stale(&before, &[(10, Serving), (20, Serving)]), [10]);
        // Old ones finishing their connections accept nothing new: settled.
        assert!(settled(&before, &[(10, ShuttingDown), (20, Serving), (21, Serving), (30, Other)]));
        assert!(settled(&before, &[(20, Serving), (21, Serving)]));
        // No worker at all (the master is between generations): not yet.
        assert!(!settled(&before, &[(10, ShuttingDown)]));
        assert!(!settled(&before, &[]));
        assert_eq!(serving(&[(10, Serving), (11, ShuttingDown), (12, Other)]), [10]);
    }
}
