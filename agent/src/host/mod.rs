//! Effects on the host, each behind a small type bound to a filesystem root.

pub(crate) mod accounts;
pub mod acme;
pub mod acme_store;
pub mod apply;
pub mod certs;
pub mod clock;
pub mod dns;
pub mod dns_facts;
pub mod download;
pub(crate) mod escrow;
pub(crate) mod execute;
pub mod failpoints;
pub mod fs;
pub mod health;
pub mod imds;
pub(crate) mod inputs;
pub mod journal;
pub(crate) mod metrics_server;
pub mod nginx;
pub mod observe;
pub(crate) mod platform;
pub mod releases;
pub(crate) mod sd_notify;
pub mod state;
pub mod systemd;
pub mod tls;
pub(crate) mod tls_proof;

/// The PATH system tools run with: hostd works the same with no environment at all (SSM's
/// `env -i`-style runs) as from an operator's shell.
pub(crate) const SYSTEM_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A system tool (`nginx`, `journalctl`, `useradd`, …) found and run with `SYSTEM_PATH`.
pub(crate) fn system_command(program: &str) -> std::process::Command {
    let found = SYSTEM_PATH.split(':').map(|d| std::path::Path::new(d).join(program)).find(|p| p.is_file());
    let mut cmd = std::process::Command::new(found.unwrap_or_else(|| program.into()));
    cmd.env("PATH", SYSTEM_PATH);
    cmd
}
