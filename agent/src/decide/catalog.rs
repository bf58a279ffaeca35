//! The managed services as data (spec §3): adding a service is adding an entry here.

/// Where a value in a service's environment or arguments comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Val {
    Lit(&'static str),
    /// `127.0.0.1:<port>` of this service.
    Bind,
    /// `http://127.0.0.1:<port>` of another catalog service.
    UrlOf(&'static str),
    Bucket(&'static str),
    RoleArn(&'static str),
    AccountId,
    Region,
    Issuer,
    Sender,
    Chain,
    ChainRpc,
    SessionPubkeyPath,
    OidcKeypairPath,
    SessionKeypairPath,
}

/// One entry of a service's environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Env {
    Set(&'static str, Val),
    /// Only on test stacks.
    TestOnly(&'static str, Val),
    /// `<NAME>_ADDRESS_<CHAIN>` for each name; names without a value are omitted.
    ChainAddresses(&'static [&'static str]),
    /// A one-shot key-encryption key (64 lowercase hex), generated once and kept forever.
    Kek(&'static str),
    /// A key-encryption key the service no longer requires (legacy data only): kept forever when
    /// the host has one, never generated on a host that has none.
    LegacyKek(&'static str),
    /// Set only while the named (optional) service is enabled on this host.
    WithService(&'static str, &'static str, Val),
    /// A one-shot secret (64 lowercase hex) shared with other services through its own env file
    /// (key, file): generated once while this service is enabled, kept forever.
    SharedSecret(&'static str, &'static str),
}

/// How the health gate probes a service on loopback (spec §3, §9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// `GET /healthz` → 200 with body `ok`.
    PlainOk,
    /// `GET /healthz` → 200 with JSON `"ok": true`.
    JsonOk,
    /// `GET /healthz` → 200 JSON with `ready`; `ready: false` is degraded, not down.
    JsonReady,
}

/// The public vhost of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vhost {
    /// The broker host (the issuer): everything proxied, long read timeout.
    Broker,
    /// The signer host: only `/dev/` and `/healthz` proxied, the rest 404.
    Signer,
    /// A worker host `<stem><S>.<zone>`: everything proxied.
    Worker(&'static str),
    /// A relay of streamed answers (`<stem><S>.<zone>`): everything proxied unbuffered, large
    /// request bodies, a long read timeout.
    Relay(&'static str),
}

impl Vhost {
    /// The public host name of this vhost in `id`'s stack.
    pub fn host(self, id: &crate::decide::naming::Identity) -> String {
        match self {
            Vhost::Broker => id.broker_host(),
            Vhost::Signer => id.signer_host(),
            Vhost::Worker(stem) | Vhost::Relay(stem) => id.service_host(stem),
        }
    }
}

/// How an operator-authored input reaches its service (`docs/upstream-contracts.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// A file the service reads once at start: handed as a systemd credential, its path in this
    /// variable (`…_FILE`).
    Credential(&'static str),
    /// A value the service takes only from its environment: written into its 0600 env file.
    EnvValue(&'static str),
    /// A file the service rewrites itself: copied once into its state directory (when no live
    /// copy exists), the live path in this variable.
    Seed(&'static str),
}

/// What an input file must hold (checked by hostd before the service sees it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One non-empty line of printable ASCII without spaces (a token or key).
    Token,
    /// Any non-empty content (a PEM, a JWT, a key file).
    Any,
    /// `vendor:token` pairs separated by commas (the MCP server's bearer list).
    VendorTokens,
    /// `0x` and 64 hex digits.
    Omni,
    /// A JSON object.
    JsonObject,
}

/// One operator-authored input of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Input {
    /// Its name under `[services.<unit>.inputs]`.
    pub name: &'static str,
    /// Its file name in the service's input directory unless the configuration names another.
    pub file: &'static str,
    /// Without it the service waits (is not started); optional ones are handed over when present.
    pub required: bool,
    pub delivery: Delivery,
    pub format: Format,
}

/// How a service receives the broker's session public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pubkey {
    None,
    /// The broker writes it.
    Writes,
    /// As a path argument; the service starts only once the PEM parses.
    PathArg,
    /// As the PEM itself in this environment variable (set by hostd's exec wrapper).
    PemEnv(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    Always,
    OnFailure,
}

/// Where the service's environment is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvTarget {
    /// `Environment=` lines in the unit (the broker: other tools read its issuer there).
    Unit,
    /// An env file under /etc/agentkeys, referenced by `EnvironmentFile=`.
    File(&'static str),
}

/// One managed service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Service {
    pub unit: &'static str,
    pub description: &'static str,
    pub binary: &'static str,
    pub args: &'static [Val],
    pub port: u16,
    pub health: Health,
    pub env_target: EnvTarget,
    pub env: &'static [Env],
    /// Extra env files: (path, optional). Optional ones are referenced as `EnvironmentFile=-…`.
    pub env_files: &'static [(&'static str, bool)],
    /// Units this one starts after (and wants).
    pub after: &'static [&'static str],
    pub vhost: Option<Vhost>,
    pub pubkey: Pubkey,
    pub restart: Restart,
    /// The binary listens on all interfaces: confine it to loopback with systemd IP filtering.
    pub loopback_ip_only: bool,
    /// How long one `/healthz` probe may take (the bundler's own health asks the chain RPC with a
    /// 3 s timeout).
    pub probe_timeout_secs: u64,
    /// Runs only where its binary ships in the release (and the configuration does not switch it
    /// off); a release without it stays valid.
    pub optional: bool,
    /// Operator-authored inputs, read from `/etc/agentkeys/<input dir>/` (see [`input_dir`]).
    pub inputs: &'static [Input],
}

const CHAIN_ENV: [Env; 3] = [
    Env::Set("AGENTKEYS_CHAIN", Val::Chain),
    Env::Set("AGENTKEYS_CHAIN_RPC_HTTP", Val::ChainRpc),
    Env::ChainAddresses(&crate::decide::chains::CORE_CONTRACTS),
];

/// The pub/sub feed worker of upstream's July deploy (optional).
pub(crate) const CHANNEL: &str = "agentkeys-worker-channel";
/// The hosted MCP server (optional; operator inputs).
pub const MCP_SERVER: &str = "agentkeys-mcp-server";
/// The metered LLM-egress gate (optional; operator inputs).
pub const GATE: &str = "agentkeys-gate";
/// The channel gateway, on its Telegram transport (optional; operator inputs).
pub const GATEWAY: &str = "agentkeys-worker-channel-weixin";

/// Seconds the broker serves on after SIGTERM before it drains.
pub(crate) const BROKER_SHUTDOWN_GRACE: &str = "5";
/// systemd's stop timeout of every managed unit, in seconds.
pub const STOP_TIMEOUT_SECS: u64 = 20;

const AUDIT_URL: Env = Env::Set("AGENTKEYS_AUDIT_WORKER_URL", Val::UrlOf("agentkeys-worker-audit"));
const DEV_KEYS: (&str, bool) = (crate::decide::paths::DEV_KEY_SERVICE_ENV, false);
const SPONSOR: (&str, bool) = (crate::decide::paths::BROKER_SPONSOR_ENV, true);

/// What the six workers share; each entry below states only what differs.
const WORKER: Service = Service {
    unit: "",
    description: "",
    binary: "",
    args: &[],
    port: 0,
    health: Health::JsonOk,
    env_target: EnvTarget::Unit,
    env: &[],
    env_files: &[],
    after: &["agentkeys-broker"],
    vhost: None,
    pubkey: Pubkey::PemEnv("BROKER_CAP_PUBKEY_PEM"),
    restart: Restart::OnFailure,
    loopback_ip_only: false,
    probe_timeout_secs: 2,
    optional: false,
    inputs: &[],
};

/// The current set, in start order: backend → broker → signer and workers → bundler.
pub const SERVICES: &[Service] = &[
    Service {
        unit: "agentkeys-backend",
        description: "AgentKeys backend (mock server)",
        binary: "agentkeys-mock-server",
        args: &[Val::Lit("--port"), Val::Lit("8090")],
        port: 8090,
        health: Health::PlainOk,
        env_target: EnvTarget::Unit,
        env: &[Env::Set("HOME", Val::Lit(crate::decide::paths::SERVICE_HOME))],
        env_files: &[DEV_KEYS],
        after: &[],
        vhost: None,
        pubkey: Pubkey::None,
        restart: Restart::OnFailure,
        loopback_ip_only: true,
        probe_timeout_secs: 2,
        optional: false,
        inputs: &[],
    },
    Service {
        unit: "agentkeys-broker",
        description: "AgentKeys broker",
        binary: "agentkeys-broker-server",
        args: &[
            Val::Lit("--port"),
            Val::Lit("8091"),
            Val::Lit("--bind"),
            Val::Lit("127.0.0.1"),
            // Without it the broker asks STS (through the SDK's credential chain, IMDS on EC2)
            // before it binds; the answer only decides a warning (the mint needs no broker creds).
            Val::Lit("--skip-startup-check"),
            Val::Lit("--export-session-pubkey-to"),
            Val::SessionPubkeyPath,
        ],
        port: 8091,
        health: Health::PlainOk,
        env_target: EnvTarget::Unit,
        env: &[
            Env::Set("HOME", Val::Lit(crate::decide::paths::SERVICE_HOME)),
            Env::Set("ACCOUNT_ID", Val::AccountId),
            Env::Set("REGION", Val::Region),
            Env::Set("BROKER_AWS_REGION", Val::Region),
            Env::Set("BROKER_OIDC_ISSUER", Val::Issuer),
            Env::Set("BROKER_OIDC_KEYPAIR_PATH", Val::OidcKeypairPath),
            Env::Set("BROKER_SESSION_KEYPAIR_PATH", Val::SessionKeypairPath),
            Env::Set("BROKER_AUTH_METHODS", Val::Lit("wallet_sig,email_link")),
            // After SIGTERM the broker keeps serving this long before it drains (default 30 s,
            // past the unit's 20 s stop timeout).
            Env::Set("BROKER_SHUTDOWN_GRACE_SECONDS", Val::Lit(BROKER_SHUTDOWN_GRACE)),
            Env::Set("BROKER_EMAIL_SENDER", Val::Lit("ses")),
            Env::Set("BROKER_EMAIL_FROM_ADDRESS", Val::Sender),
            Env::Set("BROKER_DATA_ROLE_ARN", Val::RoleArn("data")),
            Env::Set("MEMORY_ROLE_ARN", Val::RoleArn("memory")),
            CHAIN_ENV[0],
            CHAIN_ENV[1],
            CHAIN_ENV[2],
            Env::ChainAddresses(&crate::decide::chains::OPTIONAL_CONTRACTS),
            Env::Set("AGENTKEYS_BUNDLER_URL", Val::UrlOf("agentkeys-bundler")),
            AUDIT_URL,
            Env::TestOnly("AGENTKEYS_ACCEPT_ALLOW_ADDR_OVERRIDE", Val::Lit("1")),
            Env::WithService(CHANNEL, "AGENTKEYS_WORKER_CHANNEL_URL", Val::UrlOf(CHANNEL)),
            Env::WithService(CHANNEL, "CHANNEL_ROLE_ARN", Val::RoleArn("channel")),
        ],
        // The channel worker's bearer (AGENTKEYS_CHANNEL_STS_TOKEN) is a secret: never inlined in
        // the unit, and absent (ignored) where the channel worker does not run.
        env_files: &[SPONSOR, (crate::decide::paths::CHANNEL_STS_ENV, true)],
        after: &["agentkeys-backend"],
        vhost: Some(Vhost::Broker),
        pubkey: Pubkey::Writes,
        restart: Restart::Always,
        loopback_ip_only: false,
        probe_timeout_secs: 2,
        optional: false,
        inputs: &[],
    },
    Service {
        unit: "agentkeys-signer",
        description: "AgentKeys signer",
        binary: "agentkeys-mock-server",
        args: &[
            Val::Lit("--signer-only"),
            Val::Lit("--port"),
            Val::Lit("8092"),
            Val::Lit("--broker-session-pubkey-path"),
            Val::SessionPubkeyPath,
        ],
        port: 8092,
        health: Health::PlainOk,
        env_target: EnvTarget::Unit,
        env: &[Env::Set("HOME", Val::Lit(crate::decide::paths::SERVICE_HOME))],
        env_files: &[DEV_KEYS],
        after: &["agentkeys-broker"],
        vhost: Some(Vhost::Signer),
        pubkey: Pubkey::PathArg,
        restart: Restart::OnFailure,
        // In --signer-only mode the mock server binds 127.0.0.1 itself; its optional STS provider
        // (AGENTKEYS_SIGNER_STS_PROVIDER) calls out, which IP filtering would block.
        loopback_ip_only: false,
        probe_timeout_secs: 2,
        optional: false,
        inputs: &[],
    },
    Service {
        unit: "agentkeys-worker-audit",
        description: "AgentKeys audit worker",
        binary: "agentkeys-worker-audit",
        port: 9092,
        health: Health::PlainOk,
        env_target: EnvTarget::File("/etc/agentkeys/worker-audit.env"),
        env: &[
            Env::Set("AGENTKEYS_WORKER_AUDIT_BIND", Val::Bind),
            Env::Set("AGENTKEYS_WORKER_AUDIT_LEAVES_DIR", Val::Lit(crate::decide::paths::AUDIT_LEAVES)),
            Env::Set("AGENTKEYS_WORKER_AUDIT_FLUSH_INTERVAL_SECS", Val::Lit("300")),
        ],
        vhost: Some(Vhost::Worker("audit")),
        pubkey: Pubkey::None,
        ..WORKER
    },
    Service {
        unit: "agentkeys-worker-email",
        description: "AgentKeys email worker",
        binary: "agentkeys-worker-email",
        args: &[Val::Lit("--inbox-bucket"), Val::Bucket("vault")],
        port: 9093,
        health: Health::PlainOk,
        env_target: EnvTarget::File("/etc/agentkeys/worker-email.env"),
        env: &[
            Env::Set("AGENTKEYS_WORKER_EMAIL_BIND", Val::Bind),
            Env::Set("AGENTKEYS_VAULT_BUCKET", Val::Bucket("vault")),
            Env::Set("AWS_REGION", Val::Region),
        ],
        vhost: Some(Vhost::Worker("email")),
        pubkey: Pubkey::None,
        ..WORKER
    },
    Service {
        unit: "agentkeys-worker-creds",
        description: "AgentKeys credentials worker",
        binary: "agentkeys-worker-creds",
        port: 9094,
        env_target: EnvTarget::File("/etc/agentkeys/worker-creds.env"),
        env: &[
            Env::Set("WORKER_BIND", Val::Bind),
            Env::Set("VAULT_BUCKET", Val::Bucket("vault")),
            Env::Set("AWS_REGION", Val::Region),
            CHAIN_ENV[0],
            CHAIN_ENV[1],
            CHAIN_ENV[2],
            AUDIT_URL,
            Env::Set("AGENTKEYS_WORKER_REQUIRE_AUDIT", Val::Lit("0")),
            Env::Kek("AGENTKEYS_WORKER_KEK_HEX"),
        ],
        vhost: Some(Vhost::Worker("cred")),
        ..WORKER
    },
    Service {
        unit: "agentkeys-worker-memory",
        description: "AgentKeys memory worker",
        binary: "agentkeys-worker-memory",
        port: 9095,
        env_target: EnvTarget::File("/etc/agentkeys/worker-memory.env"),
        env: &[
            Env::Set("WORKER_BIND", Val::Bind),
            Env::Set("MEMORY_BUCKET", Val::Bucket("memory")),
            Env::Set("AWS_REGION", Val::Region),
            CHAIN_ENV[0],
            CHAIN_ENV[1],
            CHAIN_ENV[2],
            AUDIT_URL,
            Env::Set("AGENTKEYS_WORKER_REQUIRE_AUDIT", Val::Lit("0")),
            Env::Set("BROKER_URL", Val::UrlOf("agentkeys-broker")),
            Env::Kek("AGENTKEYS_MEMORY_KEK_HEX"),
        ],
        vhost: Some(Vhost::Worker("memory")),
        ..WORKER
    },
    Service {
        unit: "agentkeys-worker-config",
        description: "AgentKeys config worker",
        binary: "agentkeys-worker-config",
        port: 9096,
        env_target: EnvTarget::File("/etc/agentkeys/worker-config.env"),
        env: &[
            Env::Set("WORKER_BIND", Val::Bind),
            Env::Set("CONFIG_BUCKET", Val::Bucket("config")),
            Env::Set("AWS_REGION", Val::Region),
            CHAIN_ENV[0],
            CHAIN_ENV[1],
            CHAIN_ENV[2],
            AUDIT_URL,
            Env::Set("AGENTKEYS_WORKER_REQUIRE_AUDIT", Val::Lit("0")),
            // Optional since upstream #372 (v3 envelopes need no worker key): kept, never minted.
            Env::LegacyKek("AGENTKEYS_CONFIG_KEK_HEX"),
        ],
        vhost: Some(Vhost::Worker("config")),
        ..WORKER
    },
    Service {
        unit: "agentkeys-worker-classify",
        description: "AgentKeys classify worker",
        binary: "agentkeys-worker-classify",
        port: 9097,
        env_target: EnvTarget::File("/etc/agentkeys/worker-classify.env"),
        env: &[
            Env::Set("WORKER_BIND", Val::Bind),
            Env::Set("AWS_REGION", Val::Region),
            CHAIN_ENV[0],
            CHAIN_ENV[1],
            CHAIN_ENV[2],
            AUDIT_URL,
            Env::Set("AGENTKEYS_WORKER_REQUIRE_AUDIT", Val::Lit("0")),
        ],
        vhost: Some(Vhost::Worker("classify")),
        ..WORKER
    },
    Service {
        unit: CHANNEL,
        description: "AgentKeys channel worker",
        binary: "agentkeys-worker-channel",
        port: 9099,
        env_target: EnvTarget::File("/etc/agentkeys/worker-channel.env"),
        env: &[
            Env::Set("WORKER_BIND", Val::Bind),
            Env::Set("CHANNEL_BUCKET", Val::Bucket("channel")),
            Env::Set("AWS_REGION", Val::Region),
            CHAIN_ENV[0],
            CHAIN_ENV[1],
            CHAIN_ENV[2],
            Env::Set("AGENTKEYS_BROKER_URL", Val::UrlOf("agentkeys-broker")),
            Env::SharedSecret("AGENTKEYS_CHANNEL_STS_TOKEN", crate::decide::paths::CHANNEL_STS_ENV),
            Env::Kek("AGENTKEYS_CHANNEL_KEK_HEX"),
        ],
        vhost: Some(Vhost::Worker("channel")),
        optional: true,
        ..WORKER
    },
    Service {
        unit: "agentkeys-bundler",
        description: "AgentKeys bundler",
        binary: "agentkeys-bundler",
        args: &[],
        port: 9098,
        health: Health::JsonReady,
        env_target: EnvTarget::Unit,
        env: &[
            Env::Set("HOME", Val::Lit(crate::decide::paths::SERVICE_HOME)),
            Env::Set("AGENTKEYS_BUNDLER_BIND", Val::Bind),
            CHAIN_ENV[0],
            CHAIN_ENV[1],
            Env::ChainAddresses(&["ENTRYPOINT", "PAYMASTER"]),
        ],
        env_files: &[SPONSOR],
        after: &[
            "agentkeys-worker-audit",
            "agentkeys-worker-email",
            "agentkeys-worker-creds",
            "agentkeys-worker-memory",
            "agentkeys-worker-config",
            "agentkeys-worker-classify",
        ],
        vhost: None,
        pubkey: Pubkey::None,
        restart: Restart::OnFailure,
        loopback_ip_only: false,
        probe_timeout_secs: 5,
        optional: false,
        inputs: &[],
    },
    Service {
        unit: MCP_SERVER,
        description: "AgentKeys hosted MCP server",
        binary: "agentkeys-mcp-server",
        port: 8088,
        env_target: EnvTarget::File("/etc/agentkeys/mcp-server.env"),
        env: &[
            Env::Set("MCP_TRANSPORT", Val::Lit("http")),
            Env::Set("MCP_LISTEN", Val::Bind),
            Env::Set("AGENTKEYS_BROKER_URL", Val::UrlOf("agentkeys-broker")),
            Env::Set("AGENTKEYS_WORKER_MEMORY_URL", Val::UrlOf("agentkeys-worker-memory")),
            Env::Set("AGENTKEYS_WORKER_AUDIT_URL", Val::UrlOf("agentkeys-worker-audit")),
            Env::Set("MCP_MEMORY_ROLE_ARN", Val::RoleArn("memory")),
            Env::Set("MCP_VAULT_ROLE_ARN", Val::RoleArn("vault")),
            Env::Set("AWS_REGION", Val::Region),
        ],
        after: &["agentkeys-broker", "agentkeys-worker-memory", "agentkeys-worker-audit"],
        vhost: Some(Vhost::Worker("mcp")),
        pubkey: Pubkey::None,
        optional: true,
        inputs: &[
            Input {
                name: "vendor_tokens",
                file: "vendor-tokens",
                required: true,
                delivery: Delivery::EnvValue("MCP_VENDOR_TOKENS"),
                format: Format::VendorTokens,
            },
            Input {
                name: "session_bearer",
                file: "session-bearer",
                required: false,
                delivery: Delivery::Credential("MCP_AGENT_SESSION_BEARER_FILE"),
                format: Format::Any,
            },
            Input {
                name: "device_key",
                file: "device-key",
                required: false,
                delivery: Delivery::Credential("AGENTKEYS_DEVICE_KEY_FILE"),
                format: Format::Any,
            },
        ],
        ..WORKER
    },
    Service {
        unit: GATE,
        description: "AgentKeys gate (metered LLM egress)",
        binary: "agentkeys-gate",
        port: 8077,
        health: Health::PlainOk,
        env_target: EnvTarget::File("/etc/agentkeys/gate.env"),
        env: &[
            Env::Set("AGENTKEYS_GATE_LISTEN", Val::Bind),
            Env::Set("AGENTKEYS_AUDIT_URL", Val::UrlOf("agentkeys-worker-audit")),
            Env::Set("AWS_REGION", Val::Region),
        ],
        after: &["agentkeys-worker-audit"],
        vhost: Some(Vhost::Relay("gate")),
        pubkey: Pubkey::None,
        optional: true,
        inputs: &[
            Input {
                name: "upstream_api_key",
                file: "upstream-api-key",
                required: true,
                delivery: Delivery::Credential("AGENTKEYS_GATE_UPSTREAM_API_KEY_FILE"),
                format: Format::Token,
            },
            Input {
                name: "keys",
                file: "keys.json",
                required: true,
                delivery: Delivery::Seed("AGENTKEYS_GATE_KEYS_FILE"),
                format: Format::JsonObject,
            },
            Input {
                name: "admin_token",
                file: "admin-token",
                required: false,
                delivery: Delivery::EnvValue("AGENTKEYS_GATE_ADMIN_TOKEN"),
                format: Format::Token,
            },
        ],
        ..WORKER
    },
    Service {
        unit: GATEWAY,
        description: "AgentKeys channel gateway (Telegram)",
        binary: "agentkeys-worker-channel-weixin",
        port: 9100,
        env_target: EnvTarget::File("/etc/agentkeys/worker-channel-weixin.env"),
        env: &[
            Env::Set("WORKER_BIND", Val::Bind),
            // The AWS stacks' transport: it only dials out (the Bot API), so no vhost.
            Env::Set("AGENTKEYS_WEIXIN_TRANSPORT", Val::Lit("telegram")),
            Env::Set("AGENTKEYS_AUDIT_WORKER_URL", Val::UrlOf("agentkeys-worker-audit")),
            Env::WithService(CHANNEL, "AGENTKEYS_WORKER_CHANNEL_URL", Val::UrlOf(CHANNEL)),
        ],
        after: &["agentkeys-worker-audit"],
        vhost: None,
        pubkey: Pubkey::None,
        optional: true,
        inputs: &[
            Input {
                name: "bot_token",
                file: "telegram-bot-token",
                required: true,
                delivery: Delivery::Credential("AGENTKEYS_TELEGRAM_BOT_TOKEN_FILE"),
                format: Format::Token,
            },
            Input {
                name: "operator_omni",
                file: "operator-omni",
                required: true,
                delivery: Delivery::EnvValue("AGENTKEYS_WEIXIN_OPERATOR_OMNI"),
                format: Format::Omni,
            },
            Input {
                name: "contacts",
                file: "contacts.json",
                required: false,
                delivery: Delivery::Seed("AGENTKEYS_WEIXIN_CONTACT_REGISTRY_FILE"),
                format: Format::JsonObject,
            },
            Input {
                name: "admin_token",
                file: "admin-token",
                required: false,
                delivery: Delivery::EnvValue("AGENTKEYS_WEIXIN_ADMIN_TOKEN"),
                format: Format::Token,
            },
        ],
        ..WORKER
    },
];

pub fn service(unit: &str) -> Option<&'static Service> {
    SERVICES.iter().find(|s| s.unit == unit)
}

/// The directory of `svc`'s operator inputs: `/etc/agentkeys/<unit without agentkeys->`.
pub fn input_dir(svc: &Service) -> String {
    format!("{}/{}", crate::decide::paths::ETC_AGENTKEYS, state_name(svc))
}

/// The directory of the files `svc` rewrites (its seeded inputs' live copies).
pub fn state_dir(svc: &Service) -> String {
    format!("{}/{}", crate::decide::paths::SERVICE_HOME, state_name(svc))
}

fn state_name(svc: &Service) -> &'static str {
    svc.unit.strip_prefix("agentkeys-").unwrap_or(svc.unit)
}

/// Every environment key hostd itself sets for `svc` (on any chain, any stack).
pub(crate) fn managed_keys(svc: &Service) -> Vec<String> {
    svc.env
        .iter()
        .flat_map(|e| match e {
            Env::Set(k, _)
            | Env::TestOnly(k, _)
            | Env::Kek(k)
            | Env::LegacyKek(k)
            | Env::WithService(_, k, _)
            | Env::SharedSecret(k, _) => vec![(*k).to_owned()],
            Env::ChainAddresses(names) => names.iter().map(|n| format!("{n}_ADDRESS_")).collect(),
        })
        .chain(svc.inputs.iter().map(|i| match i.delivery {
            Delivery::Credential(k) | Delivery::EnvValue(k) | Delivery::Seed(k) => k.to_owned(),
        }))
        .collect()
}

/// One one-shot secret of the catalog: a key-encryption key or a shared token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KekSpec {
    pub key: &'static str,
    /// The env file that holds it.
    pub file: &'static str,
    /// Minted on a host that has none (false: legacy, only kept).
    pub generate: bool,
    /// The service it belongs to.
    pub unit: &'static str,
}

/// Every one-shot secret env key, with the env file that holds it.
pub(crate) fn keks() -> impl Iterator<Item = KekSpec> {
    SERVICES.iter().flat_map(|s| {
        s.env.iter().filter_map(move |e| match (e, s.env_target) {
            (Env::Kek(key), EnvTarget::File(file)) => Some(KekSpec { key, file, generate: true, unit: s.unit }),
            (Env::LegacyKek(key), EnvTarget::File(file)) => Some(KekSpec { key, file, generate: false, unit: s.unit }),
            (Env::SharedSecret(key, file), _) => Some(KekSpec { key, file, generate: true, unit: s.unit }),
            _ => None,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn catalog_is_consistent() {
        assert_eq!(SERVICES.len(), 14);
        let units: BTreeSet<_> = SERVICES.iter().map(|s| s.unit).collect();
        assert_eq!(units.len(), SERVICES.len(), "unit names are unique");
        let ports: BTreeSet<_> = SERVICES.iter().map(|s| s.port).collect();
        assert_eq!(ports.len(), SERVICES.len(), "ports are unique");
        for (i, s) in SERVICES.iter().enumerate() {
            for dep in s.after {
                let pos = SERVICES.iter().position(|o| o.unit == *dep).expect("dependency is in the catalog");
                assert!(pos < i, "{} starts after {dep}, which must come earlier in the catalog", s.unit);
            }
            for e in s.env {
                if let Env::Set(_, Val::UrlOf(u)) = e {
                    assert!(service(u).is_some(), "{u}");
                }
                if let Env::Kek(_) | Env::LegacyKek(_) = e {
                    assert!(matches!(s.env_target, EnvTarget::File(_)), "{}: a KEK lives in an env file", s.unit);
                }
            }
        }
        assert_eq!(keks().count(), 5, "creds, memory, config, channel KEKs and the channel STS token");
        for svc in SERVICES {
            assert!(
                crate::decide::contracts::contract(svc.binary, &[]).is_some(),
                "{}: no upstream contract",
                svc.binary
            );
        }
        assert_eq!(
            SERVICES.iter().filter(|s| s.vhost.is_some()).count(),
            11,
            "not the gateway: Telegram only dials out"
        );
        for s in SERVICES.iter().filter(|s| !s.optional) {
            for e in s.env {
                if let Env::WithService(u, ..) = e {
                    assert!(service(u).is_some_and(|o| o.optional), "{}: {u} is an optional service", s.unit);
                }
            }
            for dep in s.after {
                assert!(service(dep).is_some_and(|o| !o.optional), "{} must not depend on an optional unit", s.unit);
            }
        }
    }

    /// The inputs against the upstream contracts: a seed is a file the binary reads at start and
    /// rewrites (JSON exactly where the contract parses JSON), a credential's variable names a
    /// file too, only optional services take inputs, and names and files are unique per service.
    #[test]
    fn inputs_follow_the_contracts() {
        use crate::decide::contracts::contract;
        for svc in SERVICES.iter().filter(|s| !s.inputs.is_empty()) {
            assert!(svc.optional, "{}: a service with operator inputs must be optional (it may wait)", svc.unit);
            assert!(matches!(svc.env_target, EnvTarget::File(_)), "{}: its values need a 0600 env file", svc.unit);
            let c = contract(svc.binary, &[]).expect("contract");
            let names: BTreeSet<_> = svc.inputs.iter().map(|i| i.name).collect();
            let files: BTreeSet<_> = svc.inputs.iter().map(|i| i.file).collect();
            assert_eq!((names.len(), files.len()), (svc.inputs.len(), svc.inputs.len()), "{}", svc.unit);
            for i in svc.inputs {
                match i.delivery {
                    Delivery::Seed(var) => {
                        let f = c.files.iter().find(|f| f.name == var);
                        let f = f.unwrap_or_else(|| panic!("{}: {var} is not a file the binary reads", svc.unit));
                        assert_eq!(f.json, i.format == Format::JsonObject, "{}: {var}", svc.unit);
                        assert_eq!(f.absent_ok, !i.required, "{}: {var} may be absent exactly when optional", svc.unit);
                    }
                    Delivery::Credential(var) => assert!(var.ends_with("_FILE"), "{}: {var}", svc.unit),
                    Delivery::EnvValue(var) => assert!(!var.ends_with("_FILE"), "{}: {var}", svc.unit),
                }
            }
        }
    }
}
