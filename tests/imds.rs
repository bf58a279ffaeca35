//! The public IPv4 from EC2 IMDSv2 through aws-config's IMDS client, against a loopback stand-in
//! that speaks the IMDSv2 token protocol (PUT a token, then GET with it; no token → 401).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

struct StandIn {
    url: String,
    token_puts: Arc<AtomicUsize>,
    rejected: Arc<AtomicUsize>,
}

/// Serve IMDSv2 on loopback; `public_ip` None answers 404 like an instance without one.
fn stand_in(public_ip: Option<&'static str>) -> StandIn {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (token_puts, rejected) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (puts, rej) = (token_puts.clone(), rejected.clone());
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let mut reader = BufReader::new(&conn);
            let mut request = String::new();
            let mut headers = Vec::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) <= 2 {
                    break;
                }
                headers.push(line.trim().to_ascii_lowercase());
            }
            let has = |h: &str| headers.iter().any(|l| l.starts_with(h));
            let (status, body) = match request.split_whitespace().take(2).collect::<Vec<_>>()[..] {
                ["PUT", "/latest/api/token"] if has("x-aws-ec2-metadata-token-ttl-seconds:") => {
                    puts.fetch_add(1, Ordering::SeqCst);
                    ("200 OK", "test-token-123")
                }
                ["GET", "/latest/meta-data/public-ipv4"] if has("x-aws-ec2-metadata-token: test-token-123") => {
                    match public_ip {
                        Some(ip) => ("200 OK", ip),
                        None => ("404 Not Found", ""),
                    }
                }
                _ => {
                    rej.fetch_add(1, Ordering::SeqCst);
                    ("401 Unauthorized", "")
                }
            };
            let mut w = &conn;
            let _ = write!(
                w,
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nx-aws-ec2-metadata-token-ttl-seconds: 21600\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    StandIn { url, token_puts, rejected }
}

#[test]
fn reads_the_public_ipv4_with_a_session_token() {
    let imds = stand_in(Some("198.51.100.7"));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let ip = rt.block_on(hostd::host::imds::public_ipv4(Some(&imds.url))).unwrap();
    assert_eq!(ip.to_string(), "198.51.100.7");
    assert_eq!(imds.token_puts.load(Ordering::SeqCst), 1, "IMDSv2: a token first");
    assert_eq!(imds.rejected.load(Ordering::SeqCst), 0, "every request carried the token");
}

#[test]
fn an_instance_without_a_public_address_says_what_to_do() {
    let imds = stand_in(None);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let err = rt.block_on(hostd::host::imds::public_ipv4(Some(&imds.url))).expect_err("404");
    let msg = format!("{err:#}");
    assert!(msg.contains("set acme.public_ipv4"), "{msg}");
}
