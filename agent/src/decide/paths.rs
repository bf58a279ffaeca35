//! Every host path hostd reads or writes, relative to the filesystem root (spec §4).

pub(crate) const ETC_AGENTKEYS: &str = "/etc/agentkeys";
pub(crate) const HOSTD_CONFIG: &str = "/etc/agentkeys/hostd.toml";
pub(crate) const HOSTD_DROPINS: &str = "/etc/agentkeys/hostd.d";
pub(crate) const DEV_KEY_SERVICE_ENV: &str = "/etc/agentkeys/dev-key-service.env";
pub(crate) const BROKER_SPONSOR_ENV: &str = "/etc/agentkeys/broker-sponsor.env";
/// The one-time bearer the channel worker presents to the broker's `/v1/cap/channel-sts` (0600).
pub(crate) const CHANNEL_STS_ENV: &str = "/etc/agentkeys/channel-sts.env";
pub(crate) const IDENTITY_RECORD: &str = "/var/lib/agentkeys-hostd/identity.json";
pub(crate) const UNIT_DIR: &str = "/etc/systemd/system";
pub(crate) const BROKER_UNIT: &str = "/etc/systemd/system/agentkeys-broker.service";

pub(crate) const SERVICE_HOME: &str = "/var/lib/agentkeys";
pub(crate) const DOT_AGENTKEYS: &str = "/var/lib/agentkeys/.agentkeys";
pub(crate) const BROKER_KEY_DIR: &str = "/var/lib/agentkeys/.agentkeys/broker";
pub(crate) const SESSION_PUBKEY: &str = "/var/lib/agentkeys/.agentkeys/broker/session-keypair.pub.pem";
pub(crate) const OIDC_KEYPAIR: &str = "/var/lib/agentkeys/.agentkeys/broker/oidc-keypair.json";
pub(crate) const SESSION_KEYPAIR: &str = "/var/lib/agentkeys/.agentkeys/broker/session-keypair.json";
pub(crate) const AUDIT_LEAVES: &str = "/var/lib/agentkeys/audit-leaves";

/// The service binaries of the release in service (`current` links to it).
pub const BIN_DIR: &str = "/opt/agentkeys/current/bin";
pub(crate) const STATE_DIR: &str = "/var/lib/agentkeys-hostd";
pub const ACME_WEBROOT: &str = "/var/lib/agentkeys-hostd/acme-webroot";
pub(crate) const TLS_STORE: &str = "/var/lib/agentkeys-hostd/tls";
pub(crate) const LETSENCRYPT_LIVE: &str = "/etc/letsencrypt/live";

pub(crate) const NGINX_SITES_AVAILABLE: &str = "/etc/nginx/sites-available";
pub(crate) const NGINX_SITES_ENABLED: &str = "/etc/nginx/sites-enabled";
pub(crate) const NGINX_CONF_D: &str = "/etc/nginx/conf.d";
pub(crate) const NGINX_CONF: &str = "/etc/nginx/nginx.conf";

pub(crate) const SERVICE_USER: &str = "agentkeys";
pub(crate) const LOGIN_USER: &str = "agentkey";

pub(crate) const LOGIN_HOME: &str = "/home/agentkey";
pub(crate) const LOGIN_SSH_DIR: &str = "/home/agentkey/.ssh";
pub(crate) const LOGIN_AUTHORIZED_KEYS: &str = "/home/agentkey/.ssh/authorized_keys";
pub(crate) const SUDOERS_D: &str = "/etc/sudoers.d";
pub(crate) const SUDOERS_AGENTKEY: &str = "/etc/sudoers.d/agentkey";
pub(crate) const SSHD_CONFIG: &str = "/etc/ssh/sshd_config";
pub(crate) const SSHD_DROPIN_DIR: &str = "/etc/ssh/sshd_config.d";
pub(crate) const SSHD_DROPIN: &str = "/etc/ssh/sshd_config.d/60-agentkeys-ec2-instance-connect.conf";
