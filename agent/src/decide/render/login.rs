//! The operator login user `agentkey` (spec §4): passwordless sudo (validated before install),
//! authorized_keys seeded from the EC2 default user's (`ubuntu`, `ec2-user` or `admin`, as
//! detected), and the EC2 Instance Connect sshd drop-in.

use super::{DesiredHost, DirSpec, FileKind, FileSpec, ROOT, Trigger, Validator};
use crate::decide::paths;

/// What the host holds that the login setup depends on.
#[derive(Debug, Clone, Default)]
pub struct LoginFacts {
    /// `/etc/sudoers.d` exists (sudo is installed).
    pub sudoers_d: bool,
    /// `/etc/ssh/sshd_config`, when OpenSSH is installed.
    pub sshd_config: Option<String>,
    /// `agentkey`'s authorized_keys today.
    pub agentkey_keys: Option<String>,
    /// The EC2 default user's authorized_keys (`ubuntu` on Ubuntu, `ec2-user` on Amazon Linux).
    pub default_user_keys: Option<String>,
}

const SUDOERS: &str = "# Managed by agentkeys-hostd: the operator login user (EC2 Instance Connect, no password).\n\
                       agentkey ALL=(ALL) NOPASSWD:ALL\n";

const SSHD_DROPIN: &str = "# Managed by agentkeys-hostd: EC2 Instance Connect for the operator login user.\n\
                           Match User agentkey\n\
                           \x20   AuthorizedKeysCommand /usr/share/ec2-instance-connect/eic_run_authorized_keys %u %f\n\
                           \x20   AuthorizedKeysCommandUser ec2-instance-connect\n";

const INCLUDE: &str = "Include /etc/ssh/sshd_config.d/*.conf";

/// Seed `agentkey`'s keys from the default user's only while ours are missing or empty.
pub(crate) fn seeded_keys(ours: Option<&str>, default_user: Option<&str>) -> Option<String> {
    let empty = |k: Option<&str>| k.is_none_or(|k| k.trim().is_empty());
    (empty(ours) && !empty(default_user)).then(|| default_user.unwrap_or_default().to_owned())
}

/// sshd_config with the drop-in directory included (prepended: `Include` must precede `Match`).
pub(crate) fn with_include(config: &str) -> Option<String> {
    let has = config.lines().any(|l| {
        let l = l.trim();
        l.split_whitespace().next().is_some_and(|k| k.eq_ignore_ascii_case("include")) && l.contains("sshd_config.d")
    });
    (!has).then(|| format!("# Added by agentkeys-hostd: load drop-ins.\n{INCLUDE}\n\n{config}"))
}

pub(super) fn render(facts: &LoginFacts, host: &mut DesiredHost) {
    let user = paths::LOGIN_USER;
    host.dirs.push(DirSpec { path: paths::LOGIN_SSH_DIR.into(), mode: 0o700, owner: user, group: user, exact: true });
    if let Some(keys) = seeded_keys(facts.agentkey_keys.as_deref(), facts.default_user_keys.as_deref()) {
        host.files.push(FileSpec {
            path: paths::LOGIN_AUTHORIZED_KEYS.into(),
            content: keys,
            mode: 0o600,
            owner: user,
            group: user,
            kind: FileKind::Login,
            triggers: vec![],
            validate: None,
        });
    }
    if facts.sudoers_d {
        host.files.push(FileSpec {
            path: paths::SUDOERS_AGENTKEY.into(),
            content: SUDOERS.into(),
            mode: 0o440,
            owner: ROOT,
            group: ROOT,
            kind: FileKind::Login,
            triggers: vec![],
            validate: Some(Validator::Visudo),
        });
    }
    if let Some(config) = &facts.sshd_config {
        host.dirs.push(DirSpec {
            path: paths::SSHD_DROPIN_DIR.into(),
            mode: 0o755,
            owner: ROOT,
            group: ROOT,
            exact: false,
        });
        host.files.push(FileSpec {
            path: paths::SSHD_DROPIN.into(),
            content: SSHD_DROPIN.into(),
            mode: 0o644,
            owner: ROOT,
            group: ROOT,
            kind: FileKind::Login,
            triggers: vec![Trigger::ReloadSshd],
            validate: Some(Validator::Sshd),
        });
        if let Some(patched) = with_include(config) {
            host.files.push(FileSpec {
                path: paths::SSHD_CONFIG.into(),
                content: patched,
                mode: 0o644,
                owner: ROOT,
                group: ROOT,
                kind: FileKind::Login,
                triggers: vec![Trigger::ReloadSshd],
                validate: Some(Validator::Sshd),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_seeded_only_into_an_empty_file() {
        assert_eq!(seeded_keys(None, Some("ssh-ed25519 AAA u\n")).as_deref(), Some("ssh-ed25519 AAA u\n"));
        assert_eq!(seeded_keys(Some("\n"), Some("ssh-ed25519 AAA u\n")).as_deref(), Some("ssh-ed25519 AAA u\n"));
        assert_eq!(seeded_keys(Some("ssh-ed25519 BBB me\n"), Some("ssh-ed25519 AAA u\n")), None);
        assert_eq!(seeded_keys(None, None), None);
        assert_eq!(seeded_keys(None, Some("  ")), None);
    }

    #[test]
    fn include_is_added_once() {
        assert!(with_include("Include /etc/ssh/sshd_config.d/*.conf\nPort 22\n").is_none());
        let patched = with_include("Port 22\n").expect("patched");
        assert!(patched.contains(INCLUDE) && patched.ends_with("Port 22\n"));
        assert!(with_include(&patched).is_none());
    }
}
