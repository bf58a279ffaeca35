//! A minimal DNS client for the one question hostd asks before ordering a certificate: the A
//! records of a name, from a given server over UDP (RFC 1035). Loopback servers in tests
//! (challtestsrv); the VPC resolver or the configured one in production.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use crate::decide::acme_policy::Lookup;

/// Encode a standard recursive query for `name` IN A.
pub(crate) fn encode_query(id: u16, name: &str) -> Vec<u8> {
    let mut q = Vec::with_capacity(32 + name.len());
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]); // RD; 1 question
    for label in name.trim_end_matches('.').split('.') {
        q.push(u8::try_from(label.len()).unwrap_or(63).min(63));
        q.extend_from_slice(&label.as_bytes()[..label.len().min(63)]);
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]); // root, QTYPE A, QCLASS IN
    q
}

fn skip_name(msg: &[u8], mut i: usize) -> Option<usize> {
    loop {
        let len = *msg.get(i)?;
        if len & 0xC0 == 0xC0 {
            return Some(i + 2);
        }
        if len == 0 {
            return Some(i + 1);
        }
        i += 1 + usize::from(len);
    }
}

/// Decode the answer to query `id`.
pub(crate) fn decode_answer(id: u16, msg: &[u8]) -> Result<Lookup, String> {
    let short = || "truncated DNS answer".to_owned();
    if msg.len() < 12 || u16::from_be_bytes([msg[0], msg[1]]) != id {
        return Err("DNS answer does not match the query".into());
    }
    match msg[3] & 0x0F {
        0 => {}
        3 => return Ok(Lookup::NxDomain),
        rcode => return Err(format!("DNS server answered rcode {rcode}")),
    }
    let qd = u16::from_be_bytes([msg[4], msg[5]]);
    let an = u16::from_be_bytes([msg[6], msg[7]]);
    let mut i = 12;
    for _ in 0..qd {
        i = skip_name(msg, i).ok_or_else(short)? + 4;
    }
    let mut out = Vec::new();
    for _ in 0..an {
        i = skip_name(msg, i).ok_or_else(short)?;
        let h = msg.get(i..i + 10).ok_or_else(short)?;
        let (rtype, rdlen) = (u16::from_be_bytes([h[0], h[1]]), usize::from(u16::from_be_bytes([h[8], h[9]])));
        let data = msg.get(i + 10..i + 10 + rdlen).ok_or_else(short)?;
        if rtype == 1 && rdlen == 4 {
            out.push(Ipv4Addr::new(data[0], data[1], data[2], data[3]));
        }
        i += 10 + rdlen;
    }
    Ok(Lookup::Addresses(out))
}

/// Ask `server` for the A records of `name` (two tries, bounded in time).
pub(crate) fn lookup_a(server: SocketAddr, name: &str) -> Lookup {
    let attempt = |id: u16| -> Result<Lookup, String> {
        let bind: SocketAddr =
            if server.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { "[::]:0".parse().map_err(|e| format!("{e}"))? };
        let sock = UdpSocket::bind(bind).map_err(|e| e.to_string())?;
        sock.set_read_timeout(Some(Duration::from_secs(2))).map_err(|e| e.to_string())?;
        // Connected: only the server's answers are received, and a server with nothing listening
        // is reported at once (the kernel's port-unreachable) instead of after the timeout.
        sock.connect(server).map_err(|e| e.to_string())?;
        sock.send(&encode_query(id, name)).map_err(|e| e.to_string())?;
        let mut buf = [0u8; 1500];
        let n = sock.recv(&mut buf).map_err(|e| e.to_string())?;
        decode_answer(id, &buf[..n])
    };
    let id = u16::try_from(std::process::id() & 0xFFFF).unwrap_or(1);
    match attempt(id).or_else(|_| attempt(id.wrapping_add(1))) {
        Ok(l) => l,
        Err(e) => Lookup::Failed(format!("{server}: {e}")),
    }
}

/// The first `nameserver` of a resolv.conf text, on port 53.
pub(crate) fn resolv_conf_server(text: &str) -> Option<SocketAddr> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|ip| ip.trim().parse::<std::net::IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_of_an_answer_with_compression() {
        let q = encode_query(7, "broker.litentry.org");
        let mut a = q.clone();
        a[2] = 0x81;
        a[3] = 0x80;
        a[7] = 2; // two answers
        for ip in [[127, 0, 0, 1], [127, 0, 0, 9]] {
            a.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
            a.extend_from_slice(&ip);
        }
        let got = decode_answer(7, &a).expect("decodes");
        assert_eq!(got, Lookup::Addresses(vec![Ipv4Addr::new(127, 0, 0, 1), Ipv4Addr::new(127, 0, 0, 9)]));
        let mut nx = q.clone();
        nx[3] = 0x83;
        assert_eq!(decode_answer(7, &nx), Ok(Lookup::NxDomain));
        assert!(decode_answer(8, &a).is_err(), "wrong id");
        assert!(decode_answer(7, &a[..a.len() - 3]).is_err(), "truncated");
    }

    #[test]
    fn resolv_conf() {
        let text = "# generated\nsearch ec2.internal\nnameserver 10.0.0.2\nnameserver 1.1.1.1\n";
        assert_eq!(resolv_conf_server(text), Some("10.0.0.2:53".parse().expect("addr")));
        assert_eq!(resolv_conf_server(""), None);
    }
}
