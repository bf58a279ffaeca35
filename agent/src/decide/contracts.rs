//! The start contracts of the upstream service binaries as data: what each needs in its arguments
//! and environment, where it binds, what its `/healthz` answers and how it stops. Read from the
//! public upstream source at [`UPSTREAM_COMMIT`] (docs/upstream-contracts.md says where each fact is
//! from). Pure and self-contained: the catalog is checked against it, and the test stand-in
//! compiles this same file to enforce it.

/// The upstream commit (litentry/agent-terrier, 2026-07-23) every fact here was read at.
pub const UPSTREAM_COMMIT: &str = "c348357c690ddd3798ed7ceae599305fb62f39ff";

/// How a variable's value is checked at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Set (any value).
    Present,
    /// 64 hex digits that are not one byte repeated 32 times.
    Kek,
    /// A `host:port` socket address.
    SocketAddr,
    /// 32 bytes as hex (an optional `0x` prefix).
    Hex32,
    /// A non-negative integer.
    Seconds,
    /// An `https://` URL.
    Https,
    /// One of these words, exactly.
    OneOf(&'static [&'static str]),
    /// Comma-separated `name:secret` pairs (empty entries skipped).
    Pairs,
}

/// A requirement that holds only while another variable has one of some values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cond {
    pub var: &'static str,
    pub values: &'static [&'static str],
    /// The other variable's value when it is unset.
    pub default: &'static str,
}

/// A variable naming a file the binary reads at start (checked by whoever reads files: the
/// stand-in; hostd checks the operator inputs it hands over itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileVar {
    pub name: &'static str,
    /// A missing file is accepted (the binary starts empty and creates it later).
    pub absent_ok: bool,
    /// The file must parse as JSON.
    pub json: bool,
    /// What the binary prints (with the path) when it cannot read or parse the file.
    pub message: &'static str,
}

/// One environment variable of a contract. `{CHAIN}` in a name stands for `AGENTKEYS_CHAIN`
/// (default `heima`) upper-cased with `-` → `_`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Var {
    pub name: &'static str,
    /// Other names read in its place, in order, when it is unset.
    pub alternates: &'static [&'static str],
    /// Unset → the binary exits at start with `message`.
    pub required: bool,
    pub rule: Rule,
    /// What the binary prints when the variable is missing or its value breaks the rule.
    pub message: &'static str,
    /// `required` holds only under this condition.
    pub only_if: Option<Cond>,
}

/// Where a binary listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bind {
    /// `--port N` (default `port`) on `--bind H` when the binary has that flag, else on `host`.
    PortArg { host: &'static str, host_flag: bool, port: u16 },
    /// A socket address from `var` (also the flag `flag`, when it has one), default `default`.
    Env { var: &'static str, flag: &'static str, default: &'static str },
}

/// What a healthy `GET /healthz` answers (always HTTP 200).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthBody {
    /// The text `ok`.
    PlainOk,
    /// JSON with `"ok": true` and details.
    JsonOk,
    /// JSON with `"ok": true` and `"ready"` (false: degraded, not down).
    JsonReady,
}

/// One binary's contract (the mock server has two: backend and `--signer-only`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Contract {
    pub binary: &'static str,
    /// The argument that selects this contract, if any.
    pub mode: Option<&'static str>,
    pub env: &'static [Var],
    /// Files named by variables that it reads at start.
    pub files: &'static [FileVar],
    pub bind: Bind,
    pub health: HealthBody,
    /// The longest a healthy `/healthz` may take to answer, in seconds.
    pub health_max_secs: u64,
    /// After SIGTERM it keeps serving this many seconds (from the variable, else the default).
    pub shutdown_grace: Option<(&'static str, u64)>,
    /// The exit status of a refused start.
    pub exit_code: i32,
    /// Needs a chain id: `AGENTKEYS_CHAIN_ID[_<CHAIN>]`, else the compiled profile of the chain.
    pub needs_chain_id: bool,
}

/// The chains whose compiled profile carries a gas floor for the bundler's submitter
/// (`funding.deploy_min_wei`): with one (or `AGENTKEYS_BUNDLER_GAS_FLOOR_WEI`) its health asks the RPC.
pub const PROFILES_WITH_GAS_FLOOR: [&str; 2] = ["base", "heima"];

/// The chains upstream compiles a profile for (`crates/agentkeys-core/chain-profiles/`).
pub(crate) const COMPILED_PROFILES: [&str; 7] =
    ["anvil", "base", "base-sepolia", "ethereum", "heima", "heima-paseo", "sepolia"];

const CHAIN_ID_UNRESOLVED: &str = "bundler chain id unresolved — set AGENTKEYS_CHAIN_ID[_<CHAIN>] or run with an \
                                   AGENTKEYS_CHAIN that has a compiled chain profile";

const PEM: Var = Var {
    name: "BROKER_CAP_PUBKEY_PEM",
    alternates: &[],
    required: true,
    rule: Rule::Present,
    message: "BROKER_CAP_PUBKEY_PEM must be set",
    only_if: None,
};
const RPC: Var = Var {
    name: "AGENTKEYS_CHAIN_RPC_HTTP",
    alternates: &["CHAIN_RPC_HTTP_{CHAIN}", "HEIMA_RPC_HTTP"],
    required: true,
    rule: Rule::Present,
    message: "AGENTKEYS_CHAIN_RPC_HTTP must be set",
    only_if: None,
};
const fn core(name: &'static str, message: &'static str) -> Var {
    Var { name, alternates: &[], required: true, rule: Rule::Present, message, only_if: None }
}
const REGISTRY: Var = core("SIDECAR_REGISTRY_ADDRESS_{CHAIN}", "SIDECAR_REGISTRY_ADDRESS_{CHAIN} must be set");
const SCOPE: Var = core("SCOPE_CONTRACT_ADDRESS_{CHAIN}", "SCOPE_CONTRACT_ADDRESS_{CHAIN} must be set");
const EPOCH: Var = core("K3_EPOCH_COUNTER_ADDRESS_{CHAIN}", "K3_EPOCH_COUNTER_ADDRESS_{CHAIN} must be set");
const fn bucket(name: &'static str, message: &'static str) -> Var {
    Var { name, alternates: &[], required: true, rule: Rule::Present, message, only_if: None }
}
const fn kek(name: &'static str, required: bool, message: &'static str) -> Var {
    Var { name, alternates: &[], required, rule: Rule::Kek, message, only_if: None }
}
const MASTER: Var = Var {
    name: "DEV_KEY_SERVICE_MASTER_SECRET",
    alternates: &[],
    required: false,
    rule: Rule::Hex32,
    message: "[mock-server] FATAL: invalid DEV_KEY_SERVICE_MASTER_SECRET",
    only_if: None,
};
const fn worker_bind(default: &'static str) -> Bind {
    Bind::Env { var: "WORKER_BIND", flag: "--bind", default }
}
const WORKER: Contract = Contract {
    binary: "",
    mode: None,
    env: &[],
    files: &[],
    bind: worker_bind(""),
    health: HealthBody::JsonOk,
    health_max_secs: 1,
    shutdown_grace: None,
    exit_code: 1,
    needs_chain_id: false,
};

/// Every contract hostd runs a binary under.
/// The channel gateway's official-account transport (its default) needs the callback token and
/// app id.
const OA: Cond = Cond { var: "AGENTKEYS_WEIXIN_TRANSPORT", values: &["oa", "official-account"], default: "oa" };

pub const CONTRACTS: &[Contract] = &[
    Contract {
        binary: "agentkeys-broker-server",
        env: &[
            Var {
                name: "BROKER_OIDC_ISSUER",
                alternates: &[],
                required: true,
                rule: Rule::Https,
                message: "missing required env var: BROKER_OIDC_ISSUER",
                only_if: None,
            },
            Var {
                name: "BROKER_DATA_ROLE_ARN",
                alternates: &["BROKER_AGENT_ROLE_ARN", "ACCOUNT_ID"],
                required: true,
                rule: Rule::Present,
                message: "missing required env var: set BROKER_DATA_ROLE_ARN explicitly (legacy: BROKER_AGENT_ROLE_ARN), \
                          or set ACCOUNT_ID",
                only_if: None,
            },
            Var {
                name: "BROKER_SHUTDOWN_GRACE_SECONDS",
                alternates: &[],
                required: false,
                rule: Rule::Seconds,
                message: "BROKER_SHUTDOWN_GRACE_SECONDS must be an integer",
                only_if: None,
            },
        ],
        bind: Bind::PortArg { host: "0.0.0.0", host_flag: true, port: 8091 },
        health: HealthBody::PlainOk,
        health_max_secs: 1,
        shutdown_grace: Some(("BROKER_SHUTDOWN_GRACE_SECONDS", 30)),
        ..WORKER
    },
    Contract {
        binary: "agentkeys-mock-server",
        env: &[MASTER],
        bind: Bind::PortArg { host: "0.0.0.0", host_flag: false, port: 8090 },
        health: HealthBody::PlainOk,
        exit_code: 2,
        ..WORKER
    },
    Contract {
        binary: "agentkeys-mock-server",
        mode: Some("--signer-only"),
        env: &[MASTER],
        bind: Bind::PortArg { host: "127.0.0.1", host_flag: false, port: 8090 },
        health: HealthBody::PlainOk,
        exit_code: 2,
        ..WORKER
    },
    Contract {
        binary: "agentkeys-worker-audit",
        bind: Bind::Env { var: "AGENTKEYS_WORKER_AUDIT_BIND", flag: "--bind", default: "127.0.0.1:9092" },
        health: HealthBody::PlainOk,
        ..WORKER
    },
    Contract {
        binary: "agentkeys-worker-email",
        env: &[Var {
            name: "AGENTKEYS_VAULT_BUCKET",
            alternates: &["--inbox-bucket"],
            required: true,
            rule: Rule::Present,
            message: "the following required arguments were not provided: --inbox-bucket <INBOX_BUCKET>",
            only_if: None,
        }],
        bind: Bind::Env { var: "AGENTKEYS_WORKER_EMAIL_BIND", flag: "--bind", default: "127.0.0.1:9093" },
        health: HealthBody::PlainOk,
        exit_code: 2,
        ..WORKER
    },
    Contract {
        binary: "agentkeys-worker-creds",
        env: &[
            bucket("VAULT_BUCKET", "VAULT_BUCKET must be set"),
            PEM,
            RPC,
            REGISTRY,
            SCOPE,
            EPOCH,
            kek("AGENTKEYS_WORKER_KEK_HEX", true, "AGENTKEYS_WORKER_KEK_HEX must be set (32-byte hex)"),
        ],
        bind: worker_bind("127.0.0.1:8080"),
        ..WORKER
    },
    Contract {
        binary: "agentkeys-worker-memory",
        env: &[
            bucket("MEMORY_BUCKET", "MEMORY_BUCKET must be set"),
            PEM,
            RPC,
            REGISTRY,
            SCOPE,
            EPOCH,
            kek("AGENTKEYS_MEMORY_KEK_HEX", true, "AGENTKEYS_MEMORY_KEK_HEX must be set (32-byte hex)"),
        ],
        bind: worker_bind("127.0.0.1:8081"),
        ..WORKER
    },
    Contract {
        binary: "agentkeys-worker-config",
        env: &[
            bucket("CONFIG_BUCKET", "CONFIG_BUCKET must be set"),
            PEM,
            RPC,
            REGISTRY,
            SCOPE,
            EPOCH,
            kek("AGENTKEYS_CONFIG_KEK_HEX", false, "AGENTKEYS_CONFIG_KEK_HEX must be 64 hex chars (32 bytes)"),
        ],
        bind: worker_bind("127.0.0.1:8083"),
        ..WORKER
    },
    Contract {
        binary: "agentkeys-worker-classify",
        env: &[PEM, RPC, REGISTRY, SCOPE, EPOCH],
        bind: worker_bind("127.0.0.1:8085"),
        ..WORKER
    },
    Contract {
        binary: "agentkeys-worker-channel",
        env: &[
            bucket("CHANNEL_BUCKET", "CHANNEL_BUCKET must be set"),
            PEM,
            RPC,
            REGISTRY,
            SCOPE,
            EPOCH,
            kek("AGENTKEYS_CHANNEL_KEK_HEX", true, "AGENTKEYS_CHANNEL_KEK_HEX must be set (64 hex chars)"),
        ],
        bind: worker_bind("127.0.0.1:8084"),
        ..WORKER
    },
    Contract {
        binary: "agentkeys-bundler",
        env: &[Var {
            name: "AGENTKEYS_CHAIN_RPC_HTTP",
            alternates: &[],
            required: true,
            rule: Rule::Present,
            message: "env AGENTKEYS_CHAIN_RPC_HTTP",
            only_if: None,
        }],
        bind: Bind::Env { var: "AGENTKEYS_BUNDLER_BIND", flag: "--bind", default: "127.0.0.1:9098" },
        health: HealthBody::JsonReady,
        // With a submitter key and a gas floor it asks the RPC for the balance, bounded by 3 s.
        health_max_secs: 3,
        needs_chain_id: true,
        ..WORKER
    },
    Contract {
        binary: "agentkeys-mcp-server",
        env: &[
            Var {
                name: "MCP_TRANSPORT",
                alternates: &["--transport"],
                required: false,
                rule: Rule::OneOf(&["http", "stdio", "mcp-endpoint", "mcp_endpoint"]),
                message: "unknown transport",
                only_if: None,
            },
            Var {
                name: "MCP_ENDPOINT",
                alternates: &["--mcp-endpoint"],
                required: true,
                rule: Rule::Present,
                message: "--transport=mcp-endpoint requires --mcp-endpoint <ws[s]://...> (or env MCP_ENDPOINT)",
                only_if: Some(Cond {
                    var: "MCP_TRANSPORT",
                    values: &["mcp-endpoint", "mcp_endpoint"],
                    default: "http",
                }),
            },
            Var {
                name: "MCP_BACKEND",
                alternates: &["--backend"],
                required: false,
                rule: Rule::OneOf(&["http"]),
                message: "unknown backend",
                only_if: None,
            },
            Var {
                name: "MCP_VENDOR_TOKENS",
                alternates: &["--vendor-tokens"],
                required: false,
                rule: Rule::Pairs,
                message: "malformed vendor_token entry",
                only_if: None,
            },
        ],
        files: &[FileVar {
            name: "MCP_AGENT_SESSION_BEARER_FILE",
            absent_ok: false,
            json: false,
            message: "read --agent-session-bearer-file",
        }],
        bind: Bind::Env { var: "MCP_LISTEN", flag: "--listen", default: "0.0.0.0:8088" },
        ..WORKER
    },
    Contract {
        binary: "agentkeys-gate",
        env: &[Var {
            name: "AGENTKEYS_GATE_UPSTREAM_API_KEY",
            alternates: &[
                "--upstream-api-key",
                "AGENTKEYS_GATE_UPSTREAM_API_KEY_FILE",
                "--upstream-api-key-file",
                "ARK_API_KEY",
            ],
            required: true,
            rule: Rule::Present,
            message: "no upstream API key",
            only_if: None,
        }],
        files: &[
            FileVar {
                name: "AGENTKEYS_GATE_UPSTREAM_API_KEY_FILE",
                absent_ok: false,
                json: false,
                message: "reading upstream api key file",
            },
            FileVar { name: "AGENTKEYS_GATE_KEYS_FILE", absent_ok: false, json: true, message: "reading keys file" },
        ],
        bind: Bind::Env { var: "AGENTKEYS_GATE_LISTEN", flag: "--listen", default: "0.0.0.0:8077" },
        health: HealthBody::PlainOk,
        ..WORKER
    },
    Contract {
        binary: "agentkeys-worker-channel-weixin",
        env: &[
            Var {
                name: "AGENTKEYS_WEIXIN_TRANSPORT",
                alternates: &[],
                required: false,
                rule: Rule::OneOf(&[
                    "oa",
                    "official-account",
                    "ilink",
                    "openclaw",
                    "openclaw-weixin",
                    "telegram",
                    "tg",
                ]),
                message: "is not a transport",
                only_if: None,
            },
            Var {
                name: "AGENTKEYS_WEIXIN_TOKEN",
                alternates: &[],
                required: true,
                rule: Rule::Present,
                message: "AGENTKEYS_WEIXIN_TOKEN must be set",
                only_if: Some(OA),
            },
            Var {
                name: "AGENTKEYS_WEIXIN_APP_ID",
                alternates: &[],
                required: true,
                rule: Rule::Present,
                message: "AGENTKEYS_WEIXIN_APP_ID must be set",
                only_if: Some(OA),
            },
            Var {
                name: "AGENTKEYS_WEIXIN_CONTACT_REGISTRY_FILE",
                alternates: &[],
                required: true,
                rule: Rule::Present,
                message: "AGENTKEYS_WEIXIN_CONTACT_REGISTRY_FILE must be set",
                only_if: None,
            },
            Var {
                name: "AGENTKEYS_WEIXIN_OPERATOR_OMNI",
                alternates: &[],
                required: true,
                rule: Rule::Present,
                message: "AGENTKEYS_WEIXIN_OPERATOR_OMNI must be set",
                only_if: None,
            },
        ],
        files: &[
            FileVar {
                name: "AGENTKEYS_WEIXIN_APP_SECRET_FILE",
                absent_ok: false,
                json: false,
                message: "reading AGENTKEYS_WEIXIN_APP_SECRET_FILE",
            },
            FileVar {
                name: "AGENTKEYS_WEIXIN_ILINK_BOT_TOKEN_FILE",
                absent_ok: false,
                json: false,
                message: "reading AGENTKEYS_WEIXIN_ILINK_BOT_TOKEN_FILE",
            },
            FileVar {
                name: "AGENTKEYS_TELEGRAM_BOT_TOKEN_FILE",
                absent_ok: false,
                json: false,
                message: "reading AGENTKEYS_TELEGRAM_BOT_TOKEN_FILE",
            },
            FileVar {
                name: "AGENTKEYS_WEIXIN_CONTACT_REGISTRY_FILE",
                absent_ok: true,
                json: true,
                message: "reading contact registry",
            },
        ],
        bind: Bind::Env { var: "WORKER_BIND", flag: "", default: "127.0.0.1:9100" },
        ..WORKER
    },
];

/// The contract `binary` runs under with `args`.
pub fn contract(binary: &str, args: &[String]) -> Option<&'static Contract> {
    let of_binary = || CONTRACTS.iter().filter(move |c| c.binary == binary);
    of_binary()
        .find(|c| c.mode.is_some_and(|m| args.iter().any(|a| a == m)))
        .or_else(|| of_binary().find(|c| c.mode.is_none()))
}

/// `<CHAIN>` of a variable name: the chain upper-cased, `-` → `_`.
pub fn env_suffix(chain: &str) -> String {
    chain.to_ascii_uppercase().replace('-', "_")
}

/// A key of 32 equal bytes (all zero included): the workers refuse it at start as a placeholder.
pub(crate) fn is_placeholder(hex: &str) -> bool {
    let b = hex.as_bytes();
    b.len() == 64 && b.chunks(2).all(|c| c.eq_ignore_ascii_case(&b[..2]))
}

fn chain_suffix(env: &dyn Fn(&str) -> Option<String>) -> String {
    env_suffix(&env("AGENTKEYS_CHAIN").unwrap_or_else(|| "heima".into()))
}

fn flag_value(args: &[String], flag: &str) -> Option<String> {
    args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned()
}

fn obeys(rule: Rule, v: &str) -> bool {
    let hex = |s: &str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
    match rule {
        Rule::Present => true,
        Rule::Kek => hex(v) && !is_placeholder(v),
        Rule::SocketAddr => v.parse::<std::net::SocketAddr>().is_ok(),
        Rule::Hex32 => hex(v.strip_prefix("0x").unwrap_or(v)),
        Rule::Seconds => v.parse::<u64>().is_ok(),
        Rule::Https => v.starts_with("https://"),
        Rule::OneOf(words) => words.contains(&v),
        Rule::Pairs => v.split(',').filter(|p| !p.trim().is_empty()).all(|p| p.contains(':')),
    }
}

/// Why the binary would refuse to start with `args` and `env` (its own message), or `None`.
/// An empty value counts as unset, as the binaries treat the variables hostd writes.
pub fn start_error(c: &Contract, args: &[String], env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    let suffix = chain_suffix(env);
    let expand = |s: &str| s.replace("{CHAIN}", &suffix);
    for var in c.env {
        let name = expand(var.name);
        let value = std::iter::once(name.clone())
            .chain(var.alternates.iter().map(|a| expand(a)))
            .find_map(|n| if n.starts_with("--") { flag_value(args, &n) } else { env(&n) })
            .filter(|v| !v.is_empty());
        let required = var.required
            && var.only_if.is_none_or(|c| {
                let now = env(c.var).filter(|v| !v.is_empty()).unwrap_or_else(|| c.default.to_owned());
                c.values.contains(&now.as_str())
            });
        match value {
            None if required => return Some(expand(var.message)),
            Some(v) if !obeys(var.rule, &v) => return Some(expand(var.message)),
            _ => {}
        }
    }
    if c.needs_chain_id {
        let chain = env("AGENTKEYS_CHAIN").unwrap_or_else(|| "heima".into());
        let explicit = env(&format!("AGENTKEYS_CHAIN_ID_{suffix}")).or_else(|| env("AGENTKEYS_CHAIN_ID"));
        match explicit.filter(|v| !v.trim().is_empty()) {
            Some(id) if id.trim().parse::<u64>().is_err() => {
                return Some("AGENTKEYS_CHAIN_ID must be a u64 chain id".into());
            }
            None if !COMPILED_PROFILES.contains(&chain.as_str()) => return Some(CHAIN_ID_UNRESOLVED.into()),
            _ => {}
        }
    }
    if let Bind::Env { var, flag, .. } = c.bind
        && let Some(v) = flag_value(args, flag).or_else(|| env(var))
        && !obeys(Rule::SocketAddr, &v)
    {
        return Some(format!("invalid value '{v}' for '--bind <BIND>'"));
    }
    None
}

/// Where the binary listens with `args` and `env`.
pub fn bind_address(c: &Contract, args: &[String], env: &dyn Fn(&str) -> Option<String>) -> String {
    match c.bind {
        Bind::PortArg { host, host_flag, port } => {
            let host = if host_flag { flag_value(args, "--bind").unwrap_or_else(|| host.into()) } else { host.into() };
            format!("{host}:{}", flag_value(args, "--port").unwrap_or_else(|| port.to_string()))
        }
        Bind::Env { var, flag, default } => {
            flag_value(args, flag).or_else(|| env(var)).unwrap_or_else(|| default.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: BTreeMap<String, String> = pairs.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn each_binary_resolves_to_one_contract() {
        let signer = contract("agentkeys-mock-server", &["--signer-only".into()]).expect("signer");
        assert_eq!(signer.mode, Some("--signer-only"));
        assert_eq!(contract("agentkeys-mock-server", &[]).map(|c| c.mode), Some(None));
        assert!(contract("agentkeys-hostd", &[]).is_none());
        assert!(
            is_placeholder(&"AB".repeat(32)) && is_placeholder(&"ab".repeat(32)) && !is_placeholder(&"ab".repeat(31))
        );
    }

    #[test]
    fn a_worker_refuses_what_the_real_one_refuses() {
        let c = contract("agentkeys-worker-creds", &[]).expect("creds");
        let good = [
            ("VAULT_BUCKET", "b"),
            ("BROKER_CAP_PUBKEY_PEM", "pem"),
            ("AGENTKEYS_CHAIN", "base"),
            ("AGENTKEYS_CHAIN_RPC_HTTP", "https://rpc"),
            ("SIDECAR_REGISTRY_ADDRESS_BASE", "0x1"),
            ("SCOPE_CONTRACT_ADDRESS_BASE", "0x2"),
            ("K3_EPOCH_COUNTER_ADDRESS_BASE", "0x3"),
            ("AGENTKEYS_WORKER_KEK_HEX", "0011223344556677889900112233445566778899001122334455667788990011"),
        ];
        assert_eq!(start_error(c, &[], &env_of(&good)), None);
        let without = |k: &str| good.iter().copied().filter(|(n, _)| *n != k).collect::<Vec<_>>();
        assert_eq!(
            start_error(c, &[], &env_of(&without("SCOPE_CONTRACT_ADDRESS_BASE"))).as_deref(),
            Some("SCOPE_CONTRACT_ADDRESS_BASE must be set")
        );
        let mut placeholder = without("AGENTKEYS_WORKER_KEK_HEX");
        let same = "ab".repeat(32);
        placeholder.push(("AGENTKEYS_WORKER_KEK_HEX", &same));
        assert!(start_error(c, &[], &env_of(&placeholder)).is_some_and(|m| m.contains("KEK")));
        assert_eq!(bind_address(c, &[], &env_of(&good)), "127.0.0.1:8080", "the upstream default");
    }

    #[test]
    fn the_bundler_needs_a_chain_id() {
        let c = contract("agentkeys-bundler", &[]).expect("bundler");
        let rpc = ("AGENTKEYS_CHAIN_RPC_HTTP", "https://rpc");
        assert_eq!(start_error(c, &[], &env_of(&[rpc])), None, "heima's compiled profile");
        assert_eq!(start_error(c, &[], &env_of(&[rpc, ("AGENTKEYS_CHAIN", "base")])), None);
        let custom = [rpc, ("AGENTKEYS_CHAIN", "my-l2")];
        assert!(start_error(c, &[], &env_of(&custom)).is_some_and(|m| m.contains("chain id unresolved")));
        let with_id = [rpc, ("AGENTKEYS_CHAIN", "my-l2"), ("AGENTKEYS_CHAIN_ID_MY_L2", "777")];
        assert_eq!(start_error(c, &[], &env_of(&with_id)), None);
        let garbled = [rpc, ("AGENTKEYS_CHAIN_ID", "x")];
        assert!(start_error(c, &[], &env_of(&garbled)).is_some_and(|m| m.contains("u64")));
    }

    #[test]
    fn the_mcp_server_gate_and_gateway_refuse_what_theirs_refuse() {
        let mcp = contract("agentkeys-mcp-server", &[]).expect("mcp");
        assert_eq!(start_error(mcp, &[], &env_of(&[])), None, "every input is optional at start");
        let bad = env_of(&[("MCP_VENDOR_TOKENS", "a:1,,b")]);
        assert_eq!(start_error(mcp, &[], &bad).as_deref(), Some("malformed vendor_token entry"));
        assert_eq!(start_error(mcp, &[], &env_of(&[("MCP_VENDOR_TOKENS", "a:1, b:2,")])), None);
        let relay = env_of(&[("MCP_TRANSPORT", "mcp-endpoint")]);
        assert!(start_error(mcp, &[], &relay).is_some_and(|m| m.contains("requires --mcp-endpoint")));
        assert_eq!(
            start_error(mcp, &[], &env_of(&[("MCP_TRANSPORT", "mcp-endpoint"), ("MCP_ENDPOINT", "ws://x")])),
            None
        );
        assert_eq!(bind_address(mcp, &[], &env_of(&[])), "0.0.0.0:8088", "all interfaces by default");
        assert_eq!(bind_address(mcp, &["--listen".into(), "127.0.0.1:1".into()], &env_of(&[])), "127.0.0.1:1");

        let gate = contract("agentkeys-gate", &[]).expect("gate");
        assert!(start_error(gate, &[], &env_of(&[])).is_some_and(|m| m.contains("no upstream API key")));
        assert_eq!(start_error(gate, &[], &env_of(&[("AGENTKEYS_GATE_UPSTREAM_API_KEY_FILE", "/k")])), None);
        assert_eq!(start_error(gate, &[], &env_of(&[("ARK_API_KEY", "k")])), None);
        assert_eq!(bind_address(gate, &[], &env_of(&[])), "0.0.0.0:8077");

        let gw = contract("agentkeys-worker-channel-weixin", &[]).expect("gateway");
        let base = [("AGENTKEYS_WEIXIN_CONTACT_REGISTRY_FILE", "/r.json"), ("AGENTKEYS_WEIXIN_OPERATOR_OMNI", "0x1")];
        let oa = start_error(gw, &[], &env_of(&base));
        assert_eq!(oa.as_deref(), Some("AGENTKEYS_WEIXIN_TOKEN must be set"), "oa is the default transport");
        let telegram = [base[0], base[1], ("AGENTKEYS_WEIXIN_TRANSPORT", "telegram")];
        assert_eq!(start_error(gw, &[], &env_of(&telegram)), None, "telegram starts offline without a token");
        let smoke = [base[0], base[1], ("AGENTKEYS_WEIXIN_TRANSPORT", "smoke")];
        assert_eq!(start_error(gw, &[], &env_of(&smoke)).as_deref(), Some("is not a transport"));
        assert_eq!(bind_address(gw, &[], &env_of(&[])), "127.0.0.1:9100");
        let files: Vec<_> = gw.files.iter().filter(|f| f.absent_ok).map(|f| f.name).collect();
        assert_eq!(files, ["AGENTKEYS_WEIXIN_CONTACT_REGISTRY_FILE"], "only the registry may be absent");
    }

    #[test]
    fn binds_follow_flags_and_variables() {
        let broker = contract("agentkeys-broker-server", &[]).expect("broker");
        let args: Vec<String> = ["--port", "8091", "--bind", "127.0.0.1"].map(String::from).to_vec();
        assert_eq!(bind_address(broker, &args, &env_of(&[])), "127.0.0.1:8091");
        assert_eq!(bind_address(broker, &[], &env_of(&[])), "0.0.0.0:8091", "all interfaces by default");
        let backend = contract("agentkeys-mock-server", &[]).expect("backend");
        assert_eq!(bind_address(backend, &["--port".into(), "8090".into()], &env_of(&[])), "0.0.0.0:8090");
        let bundler = contract("agentkeys-bundler", &[]).expect("bundler");
        assert_eq!(bind_address(bundler, &[], &env_of(&[("AGENTKEYS_BUNDLER_BIND", "127.0.0.1:1")])), "127.0.0.1:1");
    }
}
