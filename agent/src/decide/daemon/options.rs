//! The daemon's settings from `[daemon]` in hostd.toml (pure): drift interval, debounce, renewal
//! jitter and the metrics listener, each checked and named in errors.

use std::net::SocketAddr;
use std::time::Duration;

use crate::decide::config::{Config, FromFile};
use crate::decide::error::{InvalidInput, Source};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonOptions {
    pub drift_interval: Duration,
    pub debounce: Duration,
    pub renewal_jitter_secs: i64,
    /// `None`: no metrics endpoint.
    pub metrics_listen: Option<SocketAddr>,
}

pub(crate) const DEFAULT_METRICS: &str = "127.0.0.1:9464";

fn bad<T>(f: &FromFile<T>, why: &str) -> InvalidInput {
    InvalidInput::new(Source::Config { file: f.file.clone(), key: f.key.clone() }, why.to_owned())
}

pub fn from_config(c: &Config) -> Result<DaemonOptions, InvalidInput> {
    let drift = match &c.daemon_drift_interval_secs {
        Some(f) if !(5..=86_400).contains(&f.value) => {
            return Err(bad(f, "the drift interval must be 5..=86400 seconds"));
        }
        Some(f) => f.value,
        None => 300,
    };
    let debounce = match &c.daemon_debounce_ms {
        Some(f) if !(50..=60_000).contains(&f.value) => return Err(bad(f, "the debounce must be 50..=60000 ms")),
        Some(f) => f.value,
        None => 1_000,
    };
    let jitter = match &c.daemon_renewal_jitter_secs {
        Some(f) if f.value > 86_400 => return Err(bad(f, "the renewal jitter must be at most 86400 seconds")),
        Some(f) => f.value,
        None => 300,
    };
    let metrics_listen = match &c.daemon_metrics_listen {
        Some(f) if f.value.is_empty() => None,
        Some(f) => {
            let addr: SocketAddr = f.value.parse().map_err(|_| bad(f, "expected IP:PORT, e.g. 127.0.0.1:9464"))?;
            if !addr.ip().is_loopback() {
                return Err(bad(f, "the metrics endpoint listens on loopback only (127.0.0.0/8 or ::1)"));
            }
            Some(addr)
        }
        None => Some(DEFAULT_METRICS.parse().expect("a valid default")),
    };
    Ok(DaemonOptions {
        drift_interval: Duration::from_secs(drift),
        debounce: Duration::from_millis(debounce),
        renewal_jitter_secs: i64::try_from(jitter).unwrap_or(86_400),
        metrics_listen,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<DaemonOptions, InvalidInput> {
        from_config(&crate::decide::config::load(&[("hostd.toml".into(), text.into())]).expect("parses"))
    }

    #[test]
    fn defaults_and_overrides() {
        let d = load("").expect("defaults");
        assert_eq!(d.drift_interval, Duration::from_secs(300));
        assert_eq!(d.metrics_listen, Some("127.0.0.1:9464".parse().expect("addr")));
        let d = load("[daemon]\ndrift_interval_secs = 5\ndebounce_ms = 200\nmetrics_listen = \"\"\n").expect("ok");
        assert_eq!((d.drift_interval.as_secs(), d.debounce.as_millis(), d.metrics_listen), (5, 200, None));
    }

    #[test]
    fn bad_values_name_the_key() {
        for (text, key) in [
            ("[daemon]\ndrift_interval_secs = 1\n", "daemon.drift_interval_secs"),
            ("[daemon]\ndebounce_ms = 0\n", "daemon.debounce_ms"),
            ("[daemon]\nrenewal_jitter_secs = 100000\n", "daemon.renewal_jitter_secs"),
            ("[daemon]\nmetrics_listen = \"0.0.0.0:9464\"\n", "daemon.metrics_listen"),
            ("[daemon]\nmetrics_listen = \"localhost\"\n", "daemon.metrics_listen"),
        ] {
            let e = load(text).expect_err(text).to_string();
            assert!(e.contains(key) && e.contains("hostd.toml"), "{e}");
        }
    }
}
