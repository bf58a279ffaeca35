//! What differs between the releases hostd runs on (Debian 11–13, Ubuntu 22.04/24.04, Amazon Linux
//! 2023), decided from what the host shows rather than asked of the operator: the nginx version
//! (how it spells HTTP/2), the nginx layout (which directories its main file includes) and worker
//! user, the systemd version (which `systemd-analyze verify` flags it knows) and the EC2 default
//! user whose keys seed the login user. Pure: the host module gathers the texts.

use serde::Serialize;

use crate::decide::render::Layout;
use crate::decide::settings::Http2Style;

/// `nginx/1.25.1` deprecated `listen … http2` (a `[warn]`, which hostd's `nginx -t` rule fails on)
/// in favour of the `http2 on;` directive.
pub const HTTP2_DIRECTIVE_SINCE: (u32, u32, u32) = (1, 25, 1);

/// `systemd-analyze verify --recursive-errors=` first shipped in systemd 250.
pub const RECURSIVE_ERRORS_SINCE: u32 = 250;

/// The EC2 default users, in the order they are looked for: Ubuntu's, Amazon Linux's, Debian's.
pub const DEFAULT_USERS: [&str; 3] = ["ubuntu", "ec2-user", "admin"];

/// The nginx version from `nginx -v` (it prints `nginx version: nginx/1.26.3`, maybe with a
/// distro suffix such as ` (Ubuntu)`).
pub fn nginx_version(said: &str) -> Option<(u32, u32, u32)> {
    dotted_version(said.split("nginx/").nth(1)?)
}

/// The `major.minor[.patch]` a text starts with (what follows it, such as a letter suffix, is
/// ignored; a missing patch is 0).
fn dotted_version(text: &str) -> Option<(u32, u32, u32)> {
    let ver: String = text.chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
    let mut parts = ver.split('.').map(|p| p.parse::<u32>().ok());
    Some((parts.next()??, parts.next()??, parts.next().flatten().unwrap_or(0)))
}

/// The OpenSSL nginx runs with, from `nginx -V` (`built with OpenSSL 3.0.11 19 Sep 2023 (running
/// with OpenSSL 3.0.15 3 Sep 2024)`: the running one counts; a distro suffix such as `1.1.1w` is
/// dropped).
pub fn openssl_version(said: &str) -> Option<(u32, u32, u32)> {
    let line = said.lines().find(|l| l.contains("built with OpenSSL"))?;
    let at = line.rfind("OpenSSL ")? + "OpenSSL ".len();
    dotted_version(&line[at..])
}

/// How this nginx spells HTTP/2; an nginx whose version is unknown gets the spelling every
/// release before 1.25.1 accepts.
pub fn http2_style(version: Option<(u32, u32, u32)>) -> Http2Style {
    match version {
        Some(v) if v >= HTTP2_DIRECTIVE_SINCE => Http2Style::Directive,
        _ => Http2Style::Listen,
    }
}

/// The systemd version from `systemd-analyze --version` (first line `systemd 252 (252.39-1~deb12u1)`).
pub fn systemd_version(said: &str) -> Option<u32> {
    let line = said.lines().next()?;
    let mut words = line.split_whitespace();
    (words.next()? == "systemd").then_some(())?;
    words.next()?.parse().ok()
}

/// The `systemd-analyze` arguments of the units lint, with only the flags this systemd knows:
/// `--recursive-errors=no` (250+) keeps the lint to our units; older releases lint them alone anyway.
pub fn verify_args(systemd: Option<u32>) -> Vec<&'static str> {
    let mut args = vec!["verify", "--man=no"];
    if systemd.is_some_and(|v| v >= RECURSIVE_ERRORS_SINCE) {
        args.push("--recursive-errors=no");
    }
    args
}

/// The `include` targets of an nginx configuration text (comments dropped, one per directive).
fn includes(conf: &str) -> Vec<String> {
    directives(conf).filter(|(name, _)| name == "include").map(|(_, arg)| arg).collect()
}

/// `(name, first argument)` of each simple directive, comments dropped, split on `;`, `{` and `}`.
fn directives(conf: &str) -> impl Iterator<Item = (String, String)> + '_ {
    let text: String = conf.lines().map(|l| l.split('#').next().unwrap_or("")).collect::<Vec<_>>().join("\n");
    let parts: Vec<String> = text.split([';', '{', '}']).map(str::to_owned).collect();
    parts.into_iter().filter_map(|p| {
        let mut words = p.split_whitespace();
        let name = words.next()?.to_owned();
        let arg = words.next().unwrap_or("").trim_matches(['"', '\'']).to_owned();
        Some((name, arg))
    })
}

/// Which layout the main configuration includes. `sites-enabled` when it includes that directory,
/// `conf.d` when it includes only `conf.d`; when the main file cannot be read (or names neither),
/// the directories decide: `conf.d` only when there is no `sites-available`.
pub fn layout(main_conf: Option<&str>, has_sites_available: bool, has_conf_d: bool) -> (Layout, String) {
    let inc = main_conf.map(includes).unwrap_or_default();
    let names = |dir: &str| inc.iter().any(|i| i.contains(dir));
    if names("/sites-enabled/") || names("sites-enabled/") {
        return (Layout::SitesEnabled, "nginx.conf includes sites-enabled/".into());
    }
    if names("conf.d/") {
        return (Layout::ConfD, "nginx.conf includes conf.d/ and no sites-enabled/".into());
    }
    if !has_sites_available && has_conf_d {
        (Layout::ConfD, "no sites-available/, a conf.d/ directory".into())
    } else {
        (Layout::SitesEnabled, "the Debian/Ubuntu default (nginx.conf names neither directory)".into())
    }
}

/// The user nginx's workers run as (`user nginx;` at the top of the main file), if named.
pub fn nginx_user(main_conf: &str) -> Option<String> {
    directives(main_conf).find(|(name, _)| name == "user").map(|(_, u)| u).filter(|u| !u.is_empty())
}

/// The EC2 default user: the first of [`DEFAULT_USERS`] whose home holds an authorized_keys, else
/// the first that exists at all.
pub fn default_user<'a>(present: &[(&'a str, bool)]) -> Option<&'a str> {
    let ordered = |want_keys: bool| {
        DEFAULT_USERS
            .iter()
            .find_map(|u| present.iter().find(|(p, keys)| p == u && (*keys || !want_keys)).map(|(p, _)| *p))
    };
    ordered(true).or_else(|| ordered(false))
}

/// Whether a value was observed on the host or set in the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Detected,
    Config,
}

/// What was detected on this host, for rendering, `doctor` and `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Platform {
    /// `1.26.3`, or none when nginx could not be asked.
    pub nginx_version: Option<String>,
    /// The OpenSSL nginx runs with (`3.0.15`), when `nginx -V` names it.
    pub openssl: Option<(u32, u32, u32)>,
    pub http2: Http2Style,
    pub http2_source: Source,
    pub layout: Layout,
    pub layout_reason: String,
    pub nginx_user: Option<String>,
    pub systemd_version: Option<u32>,
    pub default_user: Option<String>,
}

/// What the host said, gathered by `host::platform`.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// What `nginx -V` printed.
    pub nginx_v: Option<String>,
    pub nginx_conf: Option<String>,
    pub has_sites_available: bool,
    pub has_conf_d: bool,
    pub systemd_v: Option<String>,
    /// Each of [`DEFAULT_USERS`] that exists, with whether its authorized_keys does.
    pub users: Vec<(&'static str, bool)>,
}

/// The platform, from what was observed and the configuration's HTTP/2 override.
pub fn decide(o: &Observed, http2_override: Option<Http2Style>) -> Platform {
    let version = o.nginx_v.as_deref().and_then(nginx_version);
    let (layout, layout_reason) = layout(o.nginx_conf.as_deref(), o.has_sites_available, o.has_conf_d);
    Platform {
        nginx_version: version.map(|(a, b, c)| format!("{a}.{b}.{c}")),
        openssl: o.nginx_v.as_deref().and_then(openssl_version),
        http2: http2_override.unwrap_or_else(|| http2_style(version)),
        http2_source: if http2_override.is_some() { Source::Config } else { Source::Detected },
        layout,
        layout_reason,
        nginx_user: o.nginx_conf.as_deref().and_then(nginx_user),
        systemd_version: o.systemd_v.as_deref().and_then(systemd_version),
        default_user: default_user(&o.users).map(str::to_owned),
    }
}

impl Platform {
    /// One line for `doctor` and `status`.
    pub fn summary(&self) -> String {
        let http2 = match self.http2 {
            Http2Style::Listen => "listen … http2",
            Http2Style::Directive => "http2 on;",
        };
        let src = match self.http2_source {
            Source::Detected => "detected",
            Source::Config => "from [nginx] http2",
        };
        let layout = match self.layout {
            Layout::SitesEnabled => "sites-enabled",
            Layout::ConfD => "conf.d",
        };
        format!(
            "nginx {} with OpenSSL {} (HTTP/2 as `{http2}`, {src}; layout {layout}: {}; workers as {}), systemd {}, EC2 default user {}",
            self.nginx_version.as_deref().unwrap_or("unknown"),
            self.openssl.map_or_else(|| "unknown".to_owned(), |(a, b, c)| format!("{a}.{b}.{c}")),
            self.layout_reason,
            self.nginx_user.as_deref().unwrap_or("nginx's default"),
            self.systemd_version.map_or_else(|| "unknown".to_owned(), |v| v.to_string()),
            self.default_user.as_deref().unwrap_or("none found"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nginx_version_decides_the_http2_spelling() {
        assert_eq!(nginx_version("nginx version: nginx/1.18.0"), Some((1, 18, 0)));
        assert_eq!(nginx_version("nginx version: nginx/1.18.0 (Ubuntu)\n"), Some((1, 18, 0)));
        assert_eq!(nginx_version("nginx version: nginx/1.26.3"), Some((1, 26, 3)));
        assert_eq!(nginx_version("nginx: command not found"), None);
        assert_eq!(http2_style(Some((1, 22, 1))), Http2Style::Listen);
        assert_eq!(http2_style(Some((1, 25, 0))), Http2Style::Listen);
        assert_eq!(http2_style(Some((1, 25, 1))), Http2Style::Directive);
        assert_eq!(http2_style(Some((1, 26, 3))), Http2Style::Directive);
        assert_eq!(http2_style(None), Http2Style::Listen);
    }

    #[test]
    fn the_running_openssl_is_read_from_nginx_capital_v() {
        let deb12 = "nginx version: nginx/1.22.1\nbuilt with OpenSSL 3.0.11 19 Sep 2023 (running with OpenSSL 3.0.15 3 Sep 2024)\nTLS SNI support enabled\n";
        assert_eq!(openssl_version(deb12), Some((3, 0, 15)));
        let deb11 = "nginx version: nginx/1.18.0\nbuilt with OpenSSL 1.1.1n  15 Mar 2022\nTLS SNI support enabled\n";
        assert_eq!(openssl_version(deb11), Some((1, 1, 1)));
        assert_eq!(openssl_version("nginx version: nginx/1.22.1\n"), None);
        assert_eq!(nginx_version(deb12), Some((1, 22, 1)));
    }

    #[test]
    fn only_the_flags_the_systemd_knows() {
        assert_eq!(systemd_version("systemd 247 (247.3-7+deb11u6)\n+PAM +AUDIT"), Some(247));
        assert_eq!(systemd_version("systemd 257 (257.9-1~deb13u1)"), Some(257));
        assert_eq!(systemd_version("garbage"), None);
        assert_eq!(verify_args(Some(247)), ["verify", "--man=no"]);
        assert_eq!(verify_args(Some(249)), ["verify", "--man=no"]);
        assert_eq!(verify_args(Some(250)), ["verify", "--man=no", "--recursive-errors=no"]);
        assert_eq!(verify_args(None), ["verify", "--man=no"]);
    }

    const DEBIAN: &str =
        "user www-data;\nhttp {\n\tinclude /etc/nginx/conf.d/*.conf;\n\tinclude /etc/nginx/sites-enabled/*;\n}\n";
    const AL2023: &str =
        "user nginx;\n# include /etc/nginx/sites-enabled/*;\nhttp {\n    include /etc/nginx/conf.d/*.conf;\n}\n";

    #[test]
    fn the_main_file_decides_the_layout() {
        assert_eq!(layout(Some(DEBIAN), true, true).0, Layout::SitesEnabled);
        // A commented-out include is not an include.
        assert_eq!(layout(Some(AL2023), false, true).0, Layout::ConfD);
        // An Amazon-style main file on a host that also has sites-available: still conf.d.
        assert_eq!(layout(Some(AL2023), true, true).0, Layout::ConfD);
        assert_eq!(layout(None, false, true).0, Layout::ConfD);
        assert_eq!(layout(None, true, true).0, Layout::SitesEnabled);
        assert_eq!(nginx_user(DEBIAN).as_deref(), Some("www-data"));
        assert_eq!(nginx_user(AL2023).as_deref(), Some("nginx"));
        assert_eq!(nginx_user("events {}\n"), None);
    }

    #[test]
    fn the_default_user_with_keys_wins() {
        assert_eq!(default_user(&[("ubuntu", true)]), Some("ubuntu"));
        assert_eq!(default_user(&[("ec2-user", true)]), Some("ec2-user"));
        assert_eq!(default_user(&[("ubuntu", false), ("ec2-user", true)]), Some("ec2-user"));
        assert_eq!(default_user(&[("admin", false), ("ubuntu", false)]), Some("ubuntu"));
        assert_eq!(default_user(&[]), None);
    }

    #[test]
    fn a_configured_http2_overrides_the_detection() {
        let o = Observed { nginx_v: Some("nginx version: nginx/1.26.3".into()), ..Observed::default() };
        assert_eq!(decide(&o, None).http2, Http2Style::Directive);
        let p = decide(&o, Some(Http2Style::Listen));
        assert_eq!((p.http2, p.http2_source), (Http2Style::Listen, Source::Config));
        assert!(p.summary().contains("nginx 1.26.3"), "{}", p.summary());
    }
}
