//! Gathers what `decide::platform` judges: `nginx -V`, the main nginx file and its directories,
//! which EC2 default users exist with an authorized_keys, and (for `doctor` and `status`)
//! `systemd-analyze --version`.
//! Read-only; a tool that cannot be run leaves its fact unknown.

use crate::decide::paths;
use crate::decide::platform::{DEFAULT_USERS, Observed};

use super::fs::Root;
use super::system_command;

/// What `program args` printed (nginx prints its version on stderr), if it ran and succeeded.
fn said(program: &str, args: &[&str]) -> Option<String> {
    let out = system_command(program).args(args).output().ok()?;
    out.status
        .success()
        .then(|| format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// The home of an EC2 default user (all of them live under /home on every supported release).
pub(crate) fn authorized_keys_of(user: &str) -> String {
    format!("/home/{user}/.ssh/authorized_keys")
}

/// What a run needs: nginx and the default users (not systemd's version: only `doctor`'s lint
/// uses it, so a reconcile spawns one process here, `nginx -V`).
pub(crate) fn observe(root: &Root) -> anyhow::Result<Observed> {
    let users = DEFAULT_USERS
        .iter()
        .filter(|u| root.is_dir(&format!("/home/{u}")))
        .map(|u| (*u, root.path(&authorized_keys_of(u)).is_file()))
        .collect();
    Ok(Observed {
        nginx_v: said("nginx", &["-V"]),
        nginx_conf: root.read_string(paths::NGINX_CONF)?,
        has_sites_available: root.is_dir(paths::NGINX_SITES_AVAILABLE),
        has_conf_d: root.is_dir(paths::NGINX_CONF_D),
        systemd_v: None,
        users,
    })
}

/// The platform as `doctor` and `status` show it: observed, with the configuration's `[nginx]
/// http2` applied when the configuration loads (a broken one is reported by their own checks).
pub(crate) fn detect(root: &Root) -> anyhow::Result<crate::decide::platform::Platform> {
    let http2 = crate::decide::config::load(&super::observe::config_files(root)?)
        .ok()
        .and_then(|c| crate::decide::settings::http2_override(&c).ok().flatten());
    let observed = Observed { systemd_v: said("systemd-analyze", &["--version"]), ..observe(root)? };
    Ok(crate::decide::platform::decide(&observed, http2))
}
