//! One structured entry in the systemd journal through journald's native socket, so a run started
//! by SSM (outside any unit) is still found with `journalctl -t agentkeys-hostd`.

use std::os::unix::net::UnixDatagram;

const SOCKET: &str = "/run/systemd/journal/socket";

/// Send `message` with extra `fields` (upper-case names); silently skipped without journald.
pub fn send(message: &str, fields: &[(&str, &str)]) {
    let mut payload = Vec::new();
    let mut field = |k: &str, v: &str| {
        if v.contains('\n') {
            payload.extend_from_slice(k.as_bytes());
            payload.push(b'\n');
            payload.extend_from_slice(&(v.len() as u64).to_le_bytes());
            payload.extend_from_slice(v.as_bytes());
            payload.push(b'\n');
        } else {
            payload.extend_from_slice(format!("{k}={v}\n").as_bytes());
        }
    };
    field("SYSLOG_IDENTIFIER", "agentkeys-hostd");
    field("PRIORITY", "6");
    field("MESSAGE", message);
    for (k, v) in fields {
        field(k, v);
    }
    if let Ok(sock) = UnixDatagram::unbound() {
        let _ = sock.send_to(&payload, SOCKET);
    }
}
