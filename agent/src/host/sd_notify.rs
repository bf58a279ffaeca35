//! systemd's notify protocol (`Type=notify`, `WatchdogSec=`): one datagram per message to the
//! socket in `$NOTIFY_SOCKET` (a path, or `@name` for the abstract namespace).

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// Send `state` (e.g. `READY=1`, `WATCHDOG=1`, `STATUS=…`); false when not run by systemd.
pub fn notify(state: &str) -> bool {
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
        return false;
    };
    let target = target.to_string_lossy().into_owned();
    match notify_to(&target, state) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(socket = %target, error = %e, "could not notify systemd");
            false
        }
    }
}

/// Send one message to a notify socket given as a path or `@abstract-name`.
pub(crate) fn notify_to(target: &str, state: &str) -> std::io::Result<()> {
    let sock = UnixDatagram::unbound()?;
    if let Some(name) = target.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
        sock.send_to_addr(state.as_bytes(), &addr)?;
    } else {
        sock.send_to(state.as_bytes(), target)?;
    }
    Ok(())
}

/// How often to send `WATCHDOG=1`: half of `WatchdogSec=`, when systemd asked this process for it.
pub(crate) fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID")
        && pid.parse::<u32>().ok() != Some(std::process::id())
    {
        return None;
    }
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_reach_path_and_abstract_sockets() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify");
        let server = UnixDatagram::bind(&path).expect("bind");
        notify_to(path.to_str().expect("utf-8"), "READY=1\nSTATUS=test").expect("sent");
        let mut buf = [0u8; 64];
        let n = server.recv(&mut buf).expect("a datagram");
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=test");

        use std::os::linux::net::SocketAddrExt;
        let name = format!("agentkeys-hostd-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).expect("name");
        let server = UnixDatagram::bind_addr(&addr).expect("bind abstract");
        notify_to(&format!("@{name}"), "WATCHDOG=1").expect("sent");
        let n = server.recv(&mut buf).expect("a datagram");
        assert_eq!(&buf[..n], b"WATCHDOG=1");
        assert!(notify_to(dir.path().join("absent").to_str().expect("utf-8"), "READY=1").is_err());
    }
}
