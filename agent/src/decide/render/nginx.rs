//! nginx vhosts per public host in their TLS state, the shared proxy parameters, and the distro
//! default site switched off (spec §6).

use serde::Serialize;

use super::templates::{Engine, PROXY_PARAMS, VHOST};
use super::{AbsentSpec, DesiredHost, FileKind, FileSpec, HostFacts, LinkSpec, ROOT, Trigger, parent_only};
use crate::decide::catalog::Vhost;
use crate::decide::error::{InvalidInput, Source};
use crate::decide::paths;
use crate::decide::settings::{Http2Style, Settings};
use crate::decide::tls_profile::{self, ServedTls};

/// Where the distro keeps its server blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// Debian/Ubuntu: `sites-available/` + `sites-enabled/` symlinks.
    SitesEnabled,
    /// `conf.d/*.conf`.
    ConfD,
}

/// The explicit TLS state of one public host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum TlsState {
    /// No certificate yet: port 80 serves the challenge path and 503 for the rest.
    HttpPlaceholder,
    /// A certificate (hostd's or adopted from /etc/letsencrypt) is served on 443.
    Https { cert: String, key: String },
}

impl TlsState {
    pub fn name(&self) -> &'static str {
        match self {
            TlsState::HttpPlaceholder => "http-placeholder",
            TlsState::Https { .. } => "https",
        }
    }
}

pub(crate) const PROXY_PARAMS_PATH: &str = "/etc/nginx/agentkeys-proxy-params.conf";
/// The http-level TLS settings every vhost shares (in `conf.d/`, which Debian's, Ubuntu's and
/// Amazon Linux's `nginx.conf` all include).
pub(crate) const TLS_SHARED_PATH: &str = "/etc/nginx/conf.d/agentkeys-tls.conf";
/// RFC 7919's ffdhe2048, for the profile's DHE suites.
pub(crate) const DHPARAM_PATH: &str = "/etc/nginx/agentkeys-ffdhe2048.pem";

#[derive(Debug, Serialize)]
struct Tls<'a> {
    cert: &'a str,
    key: &'a str,
}

#[derive(Debug, Serialize)]
struct VhostContext<'a> {
    host: &'a str,
    state: &'static str,
    port: u16,
    signer: bool,
    tls: Option<Tls<'a>>,
    webroot: &'static str,
    ipv6: bool,
    http2_directive: bool,
    read_timeout: u32,
    /// Streamed answers (unbuffered) and request bodies up to upstream's 8 MB.
    relay: bool,
    proxy_params: &'static str,
    tls_profile: &'a ServedTls,
    tls_shared: &'static str,
}

/// Worker and signer vhosts keep nginx's usual read timeout; the broker's is configurable.
const DEFAULT_READ_TIMEOUT_SECS: u32 = 60;
/// A relay streams a model's answer: a pause between chunks may be long.
const RELAY_READ_TIMEOUT_SECS: u32 = 300;

pub(super) fn render(engine: &Engine, s: &Settings, facts: &HostFacts, host: &mut DesiredHost) -> anyhow::Result<()> {
    let reload = || vec![Trigger::ReloadNginx];
    let served = tls_profile::served(s.tls_profile, facts.platform.openssl).map_err(|e| {
        InvalidInput::new(Source::Host { file: "nginx -V".into(), detail: "the OpenSSL nginx runs with".into() }, e)
    })?;
    host.dirs.push(parent_only(paths::NGINX_CONF_D));
    let proxy_params = engine.render(PROXY_PARAMS, &std::collections::BTreeMap::<String, String>::new())?;
    for (path, content) in [
        (PROXY_PARAMS_PATH.to_owned(), proxy_params),
        (TLS_SHARED_PATH.to_owned(), tls_profile::shared_conf(DHPARAM_PATH)),
        (DHPARAM_PATH.to_owned(), tls_profile::FFDHE2048_PEM.to_owned()),
    ] {
        host.files.push(nginx_file(path, content));
    }
    let (conf_dir, default_site) = match facts.platform.layout {
        Layout::SitesEnabled => {
            host.dirs.push(parent_only(paths::NGINX_SITES_AVAILABLE));
            host.dirs.push(parent_only(paths::NGINX_SITES_ENABLED));
            (paths::NGINX_SITES_AVAILABLE, format!("{}/default", paths::NGINX_SITES_ENABLED))
        }
        Layout::ConfD => (paths::NGINX_CONF_D, format!("{}/default.conf", paths::NGINX_CONF_D)),
    };
    host.absent.push(AbsentSpec {
        path: default_site,
        reason: "the distro default site would answer for unknown hosts".into(),
        triggers: reload(),
    });
    // The vhost of an optional service that no longer runs here goes (its certificate stays).
    for svc in crate::decide::catalog::SERVICES.iter().filter(|v| !s.is_enabled(v.unit)) {
        if let Some(kind) = svc.vhost {
            let name = kind.host(&s.identity);
            let reason = format!("{} is not enabled on this host", svc.unit);
            host.absent.push(AbsentSpec {
                path: format!("{conf_dir}/{name}.conf"),
                reason: reason.clone(),
                triggers: reload(),
            });
            if facts.platform.layout == Layout::SitesEnabled {
                let path = format!("{}/{name}.conf", paths::NGINX_SITES_ENABLED);
                host.absent.push(AbsentSpec { path, reason, triggers: reload() });
            }
        }
    }
    for svc in s.services() {
        let Some(kind) = svc.vhost else { continue };
        let name = kind.host(&s.identity);
        let state = facts.tls.get(&name).cloned().unwrap_or(TlsState::HttpPlaceholder);
        let tls = match &state {
            TlsState::HttpPlaceholder => None,
            TlsState::Https { cert, key } => Some(Tls { cert, key }),
        };
        let ctx = VhostContext {
            host: &name,
            state: state.name(),
            port: svc.port,
            signer: kind == Vhost::Signer,
            tls,
            webroot: paths::ACME_WEBROOT,
            ipv6: s.nginx_ipv6,
            http2_directive: facts.platform.http2 == Http2Style::Directive,
            read_timeout: match kind {
                Vhost::Broker => s.proxy_read_timeout_secs,
                Vhost::Relay(_) => RELAY_READ_TIMEOUT_SECS,
                Vhost::Signer | Vhost::Worker(_) => DEFAULT_READ_TIMEOUT_SECS,
            },
            relay: matches!(kind, Vhost::Relay(_)),
            proxy_params: PROXY_PARAMS_PATH,
            tls_profile: &served,
            tls_shared: TLS_SHARED_PATH,
        };
        let path = format!("{conf_dir}/{name}.conf");
        host.files.push(nginx_file(path.clone(), engine.render(VHOST, &ctx)?));
        if facts.platform.layout == Layout::SitesEnabled {
            host.links.push(LinkSpec {
                path: format!("{}/{name}.conf", paths::NGINX_SITES_ENABLED),
                target: path,
                triggers: reload(),
            });
        }
    }
    Ok(())
}

/// A root-owned, world-readable nginx file whose change reloads nginx.
fn nginx_file(path: String, content: String) -> FileSpec {
    FileSpec {
        path,
        content,
        mode: 0o644,
        owner: ROOT,
        group: ROOT,
        kind: FileKind::Vhost,
        triggers: vec![Trigger::ReloadNginx],
        validate: None,
    }
}

/// Pick the TLS state of a host from what exists: hostd's own store first, then a certificate the
/// old tooling left under /etc/letsencrypt/live (adopted as-is), else the placeholder.
pub(crate) fn tls_state(host: &str, hostd_store_has: bool, letsencrypt_has: bool) -> TlsState {
    if hostd_store_has {
        let dir = format!("{}/{host}/current", paths::TLS_STORE);
        TlsState::Https { cert: format!("{dir}/fullchain.pem"), key: format!("{dir}/privkey.pem") }
    } else if letsencrypt_has {
        let dir = format!("{}/{host}", paths::LETSENCRYPT_LIVE);
        TlsState::Https { cert: format!("{dir}/fullchain.pem"), key: format!("{dir}/privkey.pem") }
    } else {
        TlsState::HttpPlaceholder
    }
}
