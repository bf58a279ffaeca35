//! Every host path hostd reads or writes, relative to the filesystem root (spec §4).

pub const ETC_AGENTKEYS: &str = "/etc/agentkeys";
pub const HOSTD_CONFIG: &str = "/etc/agentkeys/hostd.toml";
pub const HOSTD_DROPINS: &str = "/etc/agentkeys/hostd.d";
pub const DEV_KEY_SERVICE_ENV: &str = "/etc/agentkeys/dev-key-service.env";
pub const BROKER_SPONSOR_ENV: &str = "/etc/agentkeys/broker-sponsor.env";
/// The one-time bearer the channel worker presents to the broker's `/v1/cap/channel-sts` (0600).
pub const CHANNEL_STS_ENV: &str = "/etc/agentkeys/channel-sts.env";
pub const IDENTITY_RECORD: &str = "/var/lib/agentkeys-hostd/identity.json";
pub const UNIT_DIR: &str = "/etc/systemd/system";
pub const BROKER_UNIT: &str = "/etc/systemd/system/agentkeys-broker.service";

pub const SERVICE_HOME: &str = "/var/lib/agentkeys";
pub const DOT_AGENTKEYS: &str = "/var/lib/agentkeys/.agentkeys";
pub const BROKER_KEY_DIR: &str = "/var/lib/agentkeys/.agentkeys/broker";
pub const SESSION_PUBKEY: &str = "/var/lib/agentkeys/.agentkeys/broker/session-keypair.pub.pem";
pub const OIDC_KEYPAIR: &str = "/var/lib/agentkeys/.agentkeys/broker/oidc-keypair.json";
pub const SESSION_KEYPAIR: &str = "/var/lib/agentkeys/.agentkeys/broker/session-keypair.json";
pub const AUDIT_LEAVES: &str = "/var/lib/agentkeys/audit-leaves";

/// The service binaries of the release in service (`current` links to it).
pub const BIN_DIR: &str = "/opt/agentkeys/current/bin";
pub const STATE_DIR: &str = "/var/lib/agentkeys-hostd";
pub const ACME_WEBROOT: &str = "/var/lib/agentkeys-hostd/acme-webroot";
pub const TLS_STORE: &str = "/var/lib/agentkeys-hostd/tls";
pub const LETSENCRYPT_LIVE: &str = "/etc/letsencrypt/live";

pub const NGINX_SITES_AVAILABLE: &str = "/etc/nginx/sites-available";
pub const NGINX_SITES_ENABLED: &str = "/etc/nginx/sites-enabled";
pub const NGINX_CONF_D: &str = "/etc/nginx/conf.d";

pub const SERVICE_USER: &str = "agentkeys";
pub const LOGIN_USER: &str = "agentkey";

pub const LOGIN_HOME: &str = "/home/agentkey";
pub const LOGIN_SSH_DIR: &str = "/home/agentkey/.ssh";
pub const LOGIN_AUTHORIZED_KEYS: &str = "/home/agentkey/.ssh/authorized_keys";
pub const UBUNTU_AUTHORIZED_KEYS: &str = "/home/ubuntu/.ssh/authorized_keys";
pub const SUDOERS_D: &str = "/etc/sudoers.d";
pub const SUDOERS_AGENTKEY: &str = "/etc/sudoers.d/agentkey";
pub const SSHD_CONFIG: &str = "/etc/ssh/sshd_config";
pub const SSHD_DROPIN_DIR: &str = "/etc/ssh/sshd_config.d";
pub const SSHD_DROPIN: &str = "/etc/ssh/sshd_config.d/60-agentkeys-ec2-instance-connect.conf";
