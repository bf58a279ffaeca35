//! Effects on the host, each behind a small type bound to a filesystem root.

pub mod accounts;
pub mod acme;
pub mod certs;
pub mod dns;
pub mod fs;
pub mod health;
pub mod imds;
pub mod systemd;
pub mod tls_proof;
