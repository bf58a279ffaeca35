//! Everything a host is rendered from, resolved from the sources in precedence order (spec §2):
//! flag > config > env file > deployed unit > default. Every used value is validated here.

use std::collections::BTreeMap;

use crate::decide::chains;
use crate::decide::config::Config;
use crate::decide::envfile::EnvFile;
use crate::decide::error::{InvalidInput, Source};
use crate::decide::identity::Deployed;
use crate::decide::naming::{BUCKET_CLASSES, Identity};
use crate::decide::validate;

/// Non-identity flags of `reconcile`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flags {
    pub account_id: Option<String>,
    pub region: Option<String>,
}

/// How nginx spells HTTP/2 (1.25.1 deprecated `listen … http2` with a warning).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Http2Style {
    Listen,
    Directive,
}

/// Where certificates come from and how a host is checked before ordering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeSettings {
    pub directory_url: String,
    pub ca_bundle: Option<String>,
    /// The primary CA's external account binding: key id and the file holding the HMAC key.
    pub eab: Option<(String, String)>,
    /// The second CA, if configured.
    pub fallback: Option<FallbackCa>,
    pub contact_email: Option<String>,
    pub public_ipv4: Option<std::net::Ipv4Addr>,
    pub resolver: Option<std::net::SocketAddr>,
    pub imds_endpoint: Option<String>,
    pub profile: Option<String>,
}

/// A CA ordered from when the first is unreachable or keeps failing for a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FallbackCa {
    pub directory_url: String,
    pub ca_bundle: Option<String>,
    pub eab: Option<(String, String)>,
}

pub(crate) const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";

pub fn resolve_acme(config: &Config) -> Result<AcmeSettings, InvalidInput> {
    let parse = |f: &Option<crate::decide::config::FromFile<String>>,
                 what: &str,
                 ok: &dyn Fn(&str) -> bool|
     -> Result<Option<String>, InvalidInput> {
        match f {
            Some(v) if ok(&v.value) => Ok(Some(v.value.clone())),
            Some(v) => Err(InvalidInput::new(v.source(), format!("{:?} is not {what}", v.value))),
            None => Ok(None),
        }
    };
    let directory_url = match &config.acme_directory_url {
        Some(v) => validate::http_url(&v.source(), &v.value)?,
        None => LETS_ENCRYPT.to_owned(),
    };
    let ca_bundle = match &config.acme_ca_bundle {
        Some(v) => Some(abs_path(&v.source(), &v.value)?),
        None => None,
    };
    let contact_email = match &config.acme_contact_email {
        Some(v) => Some(validate::email(&v.source(), &v.value)?),
        None => None,
    };
    let public_ipv4 = parse(&config.acme_public_ipv4, "an IPv4 address", &|s| s.parse::<std::net::Ipv4Addr>().is_ok())?
        .map(|s| s.parse().expect("checked"));
    let resolver = parse(&config.acme_resolver, "an IP:PORT address", &|s| s.parse::<std::net::SocketAddr>().is_ok())?
        .map(|s| s.parse().expect("checked"));
    let imds_endpoint = match &config.acme_imds_endpoint {
        Some(v) => Some(validate::http_url(&v.source(), &v.value)?),
        None => None,
    };
    let profile = parse(&config.acme_profile, "a profile name (letters, digits, -, _)", &|s| {
        !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })?;
    let eab = |kid: &Option<crate::decide::config::FromFile<String>>,
               file: &Option<crate::decide::config::FromFile<String>>|
     -> Result<Option<(String, String)>, InvalidInput> {
        match (kid, file) {
            (None, None) => Ok(None),
            (Some(k), Some(f)) => {
                let kid_ok =
                    !k.value.is_empty() && k.value.len() <= 256 && k.value.bytes().all(|b| b.is_ascii_graphic());
                if !kid_ok {
                    return Err(InvalidInput::new(k.source(), "is not an EAB key id (printable, no spaces)"));
                }
                Ok(Some((k.value.clone(), abs_path(&f.source(), &f.value)?)))
            }
            (Some(k), None) => {
                Err(InvalidInput::new(k.source(), "an EAB key id needs its eab_hmac_key_file next to it"))
            }
            (None, Some(f)) => Err(InvalidInput::new(f.source(), "an EAB HMAC key file needs its eab_kid next to it")),
        }
    };
    let primary_eab = eab(&config.acme_eab_kid, &config.acme_eab_hmac_key_file)?;
    let fallback = match &config.acme_fallback_directory_url {
        Some(v) => {
            let url = validate::http_url(&v.source(), &v.value)?;
            if url == directory_url {
                return Err(InvalidInput::new(
                    v.source(),
                    "is the primary CA's directory; a fallback must be another CA",
                ));
            }
            let ca_bundle = match &config.acme_fallback_ca_bundle {
                Some(b) => Some(abs_path(&b.source(), &b.value)?),
                None => None,
            };
            Some(FallbackCa {
                directory_url: url,
                ca_bundle,
                eab: eab(&config.acme_fallback_eab_kid, &config.acme_fallback_eab_hmac_key_file)?,
            })
        }
        None => {
            let stray = [
                &config.acme_fallback_ca_bundle,
                &config.acme_fallback_eab_kid,
                &config.acme_fallback_eab_hmac_key_file,
            ];
            if let Some(v) = stray.into_iter().flatten().next() {
                return Err(InvalidInput::new(v.source(), "has no acme.fallback.directory_url to apply to"));
            }
            None
        }
    };
    Ok(AcmeSettings {
        directory_url,
        ca_bundle,
        eab: primary_eab,
        fallback,
        contact_email,
        public_ipv4,
        resolver,
        imds_endpoint,
        profile,
    })
}

/// The resolved, validated settings of one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub identity: Identity,
    pub account_id: String,
    pub region: String,
    pub chain: String,
    pub rpc_http: String,
    /// Contract name → address; names without an address are absent.
    pub addresses: BTreeMap<String, String>,
    /// Bucket class → name.
    pub buckets: BTreeMap<String, String>,
    pub sender: String,
    pub proxy_read_timeout_secs: u32,
    pub bin_dir: String,
    pub hostd_bin: String,
    pub nginx_ipv6: bool,
    /// `[nginx] http2`, when set: overrides the spelling detected from the nginx version.
    pub nginx_http2: Option<Http2Style>,
    /// `[nginx] tls_profile`: which of Mozilla's configurations the HTTPS vhosts serve.
    pub tls_profile: crate::decide::tls_profile::TlsProfile,
    pub acme: AcmeSettings,
    /// Escrow the stack's irreplaceable secrets in its Secrets Manager secret (default on).
    pub escrow: bool,
    /// Extra environment per service: unit → key → value.
    pub service_env: BTreeMap<String, BTreeMap<String, String>>,
    /// Optional services the configuration switches off (`services.<unit>.enabled = false`).
    pub switched_off: Vec<String>,
    /// Where each operator input lives (`[services.<unit>.inputs]`, else the default names).
    pub input_files: crate::decide::inputs::InputFiles,
    /// Each optional service's presence on this host (`run::prepare` decides it; until then none
    /// runs). Every required service runs; an optional one only when it is `On` here.
    pub presence: BTreeMap<&'static str, crate::decide::inputs::Presence>,
    /// Overrides between sources and degraded states, reported to the operator.
    pub notes: Vec<String>,
}

/// Whether the escrow is on: as configured, else on for a real host and off for a host laid out
/// under another root (`--root`: offline rendering and tests make no AWS call unless asked to).
pub(crate) fn escrow_on(config: &Config, real_root: bool) -> bool {
    config.escrow_enabled.as_ref().map_or(real_root, |f| f.value)
}

/// A candidate value and where it came from.
struct Candidate {
    value: String,
    source: Source,
    /// Deployed values are checked only when chosen, so a broken old value can be overridden.
    lazy: bool,
}

/// Pick the first candidate, validate the ones that matter, note overrides.
fn pick(
    what: &str,
    candidates: Vec<Candidate>,
    check: impl Fn(&Source, &str) -> Result<String, InvalidInput>,
    notes: &mut Vec<String>,
) -> Result<Option<(String, Source)>, InvalidInput> {
    for c in candidates.iter().filter(|c| !c.lazy) {
        check(&c.source, &c.value)?;
    }
    let Some(first) = candidates.first() else {
        return Ok(None);
    };
    let value = check(&first.source, &first.value)?;
    // Overriding a built-in default is what configuration is for; only disagreements between
    // sources an operator wrote are worth a note.
    for other in candidates[1..].iter().filter(|c| !matches!(c.source, Source::Default(_))) {
        if other.value != first.value {
            notes.push(format!(
                "{what}: {} ({}) overrides {} ({})",
                first.value, first.source, other.value, other.source
            ));
        }
    }
    Ok(Some((value, first.source.clone())))
}

fn flag(name: &str, v: &Option<String>) -> Option<Candidate> {
    v.clone().map(|value| Candidate { value, source: Source::Flag(name.into()), lazy: false })
}

fn conf(v: &Option<crate::decide::config::FromFile<String>>) -> Option<Candidate> {
    v.as_ref().map(|f| Candidate { value: f.value.clone(), source: f.source(), lazy: false })
}

fn envf(env: Option<&EnvFile>, key: &str) -> Option<Candidate> {
    env.and_then(|e| {
        e.get(key).map(|entry| Candidate { value: entry.value.clone(), source: e.source(key), lazy: false })
    })
}

/// A value of the deployed broker unit; an empty assignment counts as absent (the old script wrote
/// such lines, which the broker cannot use), so the next source decides.
fn unit(deployed: Option<&Deployed>, key: &str) -> Option<Candidate> {
    deployed.and_then(|d| {
        d.unit_env.get(key).filter(|v| !v.is_empty()).map(|v| Candidate {
            value: v.clone(),
            source: Source::Host { file: d.record.clone(), detail: format!("Environment={key}") },
            lazy: true,
        })
    })
}

fn default(what: &str, value: String) -> Option<Candidate> {
    Some(Candidate { value, source: Source::Default(what.into()), lazy: false })
}

fn abs_path(source: &Source, v: &str) -> Result<String, InvalidInput> {
    validate::safe_value(source, v)?;
    if !v.starts_with('/') || v.split('/').any(|p| p == "..") || v.len() > 1 && v.ends_with('/') {
        return Err(InvalidInput::new(
            source.clone(),
            format!("{v:?} must be an absolute path without .. or a trailing /"),
        ));
    }
    Ok(v.to_owned())
}

/// `[services.<unit>.environment]`: known units, plain keys, safe values, never a key hostd sets.
/// The optional services switched off in configuration; a required one cannot be.
pub(crate) fn resolve_switched_off(config: &Config) -> Result<Vec<String>, InvalidInput> {
    let mut off = Vec::new();
    for (unit, on) in &config.service_enabled {
        match crate::decide::catalog::service(unit) {
            Some(svc) if svc.optional => {
                if !on.value {
                    off.push(unit.clone());
                }
            }
            Some(_) if on.value => {}
            Some(_) => {
                return Err(InvalidInput::new(on.source(), format!("{unit} is required; it cannot be switched off")));
            }
            None => return Err(InvalidInput::new(on.source(), format!("{unit:?} is not a managed service"))),
        }
    }
    Ok(off)
}

impl Settings {
    /// The catalog's services that run on this host, in catalog order.
    pub fn services(&self) -> impl Iterator<Item = &'static crate::decide::catalog::Service> + '_ {
        crate::decide::catalog::SERVICES.iter().filter(|s| self.is_enabled(s.unit))
    }

    pub(crate) fn is_enabled(&self, unit: &str) -> bool {
        crate::decide::catalog::service(unit)
            .is_some_and(|s| !s.optional || self.presence.get(unit) == Some(&crate::decide::inputs::Presence::On))
    }
}

fn resolve_service_env(config: &Config) -> Result<BTreeMap<String, BTreeMap<String, String>>, InvalidInput> {
    let mut out = BTreeMap::new();
    for (unit, vars) in &config.service_env {
        let Some(svc) = crate::decide::catalog::service(unit) else {
            let (_, any) = vars.iter().next().expect("a unit entry has at least one key");
            let known: Vec<&str> = crate::decide::catalog::SERVICES.iter().map(|s| s.unit).collect();
            return Err(InvalidInput::new(
                any.source(),
                format!("{unit:?} is not a managed service ({})", known.join(", ")),
            ));
        };
        let managed = crate::decide::catalog::managed_keys(svc);
        let mut env = BTreeMap::new();
        for (key, v) in vars {
            let good_key = key.bytes().next().is_some_and(|b| b.is_ascii_uppercase() || b == b'_')
                && key.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
            if !good_key {
                return Err(InvalidInput::new(
                    v.source(),
                    format!("{key:?} is not an environment variable name (A-Z, 0-9, _)"),
                ));
            }
            if managed.iter().any(|m| m == key || (m.ends_with('_') && key.starts_with(m.as_str()))) {
                return Err(InvalidInput::new(
                    v.source(),
                    format!("{key} is set by hostd for {unit}; use its dedicated setting instead"),
                ));
            }
            if v.value.is_empty() {
                return Err(InvalidInput::new(
                    v.source(),
                    "an empty value would be written as an empty assignment; remove the key instead",
                ));
            }
            env.insert(key.clone(), validate::safe_value(&v.source(), &v.value)?);
        }
        out.insert(unit.clone(), env);
    }
    Ok(out)
}

/// An absolute path from configuration, else the built-in default.
fn config_or_default(
    what: &str,
    value: &Option<crate::decide::config::FromFile<String>>,
    fallback: &str,
    notes: &mut Vec<String>,
) -> Result<String, InvalidInput> {
    let cands = [conf(value), default(what, fallback.into())].into_iter().flatten().collect();
    Ok(pick(what, cands, abs_path, notes)?.map(|(v, _)| v).unwrap_or_default())
}

/// The AWS account id: flag > config > env file > deployed unit > hostd's record.
pub(crate) fn resolve_account_id(
    flags: &Flags,
    config: &Config,
    env: Option<&EnvFile>,
    deployed: Option<&Deployed>,
    notes: &mut Vec<String>,
) -> Result<Option<String>, InvalidInput> {
    let recorded = deployed.and_then(|d| {
        d.recorded_account_id.clone().map(|value| Candidate {
            value,
            source: Source::Host { file: crate::decide::paths::IDENTITY_RECORD.into(), detail: "account_id".into() },
            lazy: true,
        })
    });
    let cands = [
        flag("--account-id", &flags.account_id),
        conf(&config.account_id),
        envf(env, "ACCOUNT_ID"),
        unit(deployed, "ACCOUNT_ID"),
        recorded,
    ]
    .into_iter()
    .flatten()
    .collect();
    Ok(pick("account id", cands, validate::account_id, notes)?.map(|(v, _)| v))
}

/// The AWS region: flag > config > env file > deployed unit > `us-east-1`.
pub(crate) fn resolve_region(
    flags: &Flags,
    config: &Config,
    env: Option<&EnvFile>,
    deployed: Option<&Deployed>,
    notes: &mut Vec<String>,
) -> Result<String, InvalidInput> {
    let cands = [
        flag("--region", &flags.region),
        conf(&config.region),
        envf(env, "REGION"),
        unit(deployed, "REGION"),
        default("region", "us-east-1".into()),
    ]
    .into_iter()
    .flatten()
    .collect();
    Ok(pick("region", cands, validate::region, notes)?.map(|(v, _)| v).unwrap_or_default())
}

/// Resolve every setting. `identity` has already passed the cross-wire guard.
pub(crate) fn resolve(
    identity: Identity,
    flags: &Flags,
    config: &Config,
    env: Option<&EnvFile>,
    deployed: Option<&Deployed>,
) -> Result<Settings, InvalidInput> {
    let mut notes = Vec::new();
    let n = &mut notes;
    let account_id = resolve_account_id(flags, config, env, deployed, n)?.ok_or_else(|| {
        InvalidInput::new(
            Source::Flag("--account-id".into()),
            "no AWS account id: pass --account-id, set aws.account_id in hostd.toml or ACCOUNT_ID in --env-file",
        )
    })?;
    let region = resolve_region(flags, config, env, deployed, n)?;

    let chain = identity.stack.chain().to_owned();
    for c in [conf(&config.chain), envf(env, "AGENTKEYS_CHAIN")].into_iter().flatten() {
        if c.value != chain {
            return Err(InvalidInput::new(
                c.source,
                format!("the {} stack runs on chain {chain}, not {:?}", identity.stack, c.value),
            ));
        }
    }
    let suffix = chains::env_suffix(&chain);
    let deployed_same_chain = deployed.filter(|d| d.unit_env.get("AGENTKEYS_CHAIN").is_none_or(|c| *c == chain));
    let rpc_key = format!("AGENTKEYS_CHAIN_RPC_HTTP_{suffix}");
    let rpc_default = chains::profile(&chain).map(|p| p.default_rpc_http.to_owned());
    let rpc_http = pick(
        "chain RPC",
        [
            conf(&config.rpc_http),
            envf(env, &rpc_key),
            unit(deployed_same_chain, "AGENTKEYS_CHAIN_RPC_HTTP"),
            rpc_default.and_then(|u| default("chain RPC (upstream chain profile)", u)),
        ]
        .into_iter()
        .flatten()
        .collect(),
        validate::http_url,
        n,
    )?
    .ok_or_else(|| {
        InvalidInput::new(
            Source::Missing("chain.rpc_http".into()),
            format!(
                "chain {chain} has no upstream chain profile and so no default RPC endpoint; set chain.rpc_http \
                 in {} or {rpc_key} in --env-file",
                crate::decide::paths::HOSTD_CONFIG
            ),
        )
    })?
    .0;

    let known: Vec<&str> = chains::CORE_CONTRACTS.iter().chain(chains::OPTIONAL_CONTRACTS.iter()).copied().collect();
    if let Some((name, f)) = config.addresses.iter().find(|(name, _)| !known.contains(&name.as_str())) {
        return Err(InvalidInput::new(f.source(), format!("unknown contract {name:?}; known: {}", known.join(", "))));
    }
    let mut addresses = BTreeMap::new();
    let mut missing_core = Vec::new();
    for name in &known {
        let key = chains::address_key(name, &chain);
        let profile_default = chains::default_address(&chain, name)
            .and_then(|a| default(&format!("{key} (upstream chain profile)"), a.to_owned()));
        let cands = [conf(&config.addresses.get(*name).cloned()), envf(env, &key), unit(deployed_same_chain, &key)]
            .into_iter()
            .flatten()
            .chain(profile_default)
            .collect();
        let check = |s: &Source, v: &str| {
            if v.is_empty() { Ok(String::new()) } else { validate::address(s, v) }
        };
        match pick(&key, cands, check, n)? {
            Some((v, _)) if !v.is_empty() => {
                addresses.insert((*name).to_owned(), v);
            }
            _ if chains::CORE_CONTRACTS.contains(name) => missing_core.push(key),
            _ => {}
        }
    }
    if !missing_core.is_empty() {
        return Err(InvalidInput::new(
            Source::Missing("addresses".into()),
            format!(
                "{} not set: the creds, memory, config, classify and channel workers exit at start without \
                 them (upstream contract). Set them under [addresses] in {} or in --env-file",
                missing_core.join(", "),
                crate::decide::paths::HOSTD_CONFIG
            ),
        ));
    }

    let mut buckets = BTreeMap::new();
    for class in BUCKET_CLASSES {
        let env_keys: &[&str] = if class == "mail" { &["MAIL_BUCKET", "BUCKET"] } else { &[] };
        let upper = format!("{}_BUCKET", class.to_ascii_uppercase());
        let mut cands: Vec<Candidate> = conf(&config.buckets.get(class).cloned()).into_iter().collect();
        cands.extend(env_keys.iter().chain(std::iter::once(&upper.as_str())).filter_map(|k| envf(env, k)));
        cands.extend(default("bucket", identity.bucket(class, &account_id)));
        let v = pick(&format!("{class} bucket"), cands, validate::bucket, n)?.map(|(v, _)| v).unwrap_or_default();
        buckets.insert(class.to_owned(), v);
    }

    let sender = pick(
        "sender",
        [
            conf(&config.email_from_address),
            envf(env, "BROKER_EMAIL_FROM_ADDRESS"),
            unit(deployed, "BROKER_EMAIL_FROM_ADDRESS"),
            default("sender", identity.sender()),
        ]
        .into_iter()
        .flatten()
        .collect(),
        validate::email,
        n,
    )?
    .map(|(v, _)| v)
    .unwrap_or_default();

    let timeout = config.proxy_read_timeout_secs.as_ref().map_or(Ok(120), |t| {
        if (1..=3600).contains(&t.value) {
            Ok(t.value)
        } else {
            Err(InvalidInput::new(t.source(), "must be between 1 and 3600 seconds"))
        }
    })?;
    let bin_dir = config_or_default("bin dir", &config.bin_dir, crate::decide::paths::BIN_DIR, n)?;
    let hostd_bin = config_or_default("hostd binary", &config.hostd_bin, "/usr/bin/agentkeys-hostd", n)?;
    let http2 = http2_override(config)?;
    let tls_profile = tls_profile(config)?;
    let service_env = resolve_service_env(config)?;
    let switched_off = resolve_switched_off(config)?;
    let input_files = crate::decide::inputs::files(config)?;
    let acme = resolve_acme(config)?;
    Ok(Settings {
        identity,
        account_id,
        region,
        chain,
        rpc_http,
        addresses,
        buckets,
        sender,
        proxy_read_timeout_secs: timeout,
        bin_dir,
        hostd_bin,
        nginx_ipv6: config.nginx_ipv6.as_ref().is_none_or(|f| f.value),
        nginx_http2: http2,
        tls_profile,
        escrow: escrow_on(config, true),
        service_env,
        switched_off,
        input_files,
        presence: BTreeMap::new(),
        acme,
        notes,
    })
}

/// `[nginx] http2`, when set (`listen` or `directive`): overrides the detected spelling.
pub fn http2_override(config: &Config) -> Result<Option<Http2Style>, InvalidInput> {
    match config.nginx_http2.as_ref() {
        None => Ok(None),
        Some(f) if f.value == "listen" => Ok(Some(Http2Style::Listen)),
        Some(f) if f.value == "directive" => Ok(Some(Http2Style::Directive)),
        Some(f) => Err(InvalidInput::new(f.source(), format!("{:?} is not listen or directive", f.value))),
    }
}

/// `[nginx] tls_profile`: `intermediate` (the default) or `modern`.
pub fn tls_profile(config: &Config) -> Result<crate::decide::tls_profile::TlsProfile, InvalidInput> {
    match config.nginx_tls_profile.as_ref() {
        None => Ok(crate::decide::tls_profile::TlsProfile::default()),
        Some(f) => crate::decide::tls_profile::TlsProfile::parse(&f.value)
            .ok_or_else(|| InvalidInput::new(f.source(), format!("{:?} is not intermediate or modern", f.value))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::naming::Stack;

    fn identity(stack: Stack) -> Identity {
        Identity { stack, zone: "litentry.org".into() }
    }

    fn config(text: &str) -> Config {
        crate::decide::config::load(&[("/etc/agentkeys/hostd.toml".to_owned(), text.to_owned())]).expect("config")
    }

    fn resolve_with(
        stack: Stack,
        text: &str,
        env: Option<&EnvFile>,
        deployed: Option<&Deployed>,
    ) -> Result<Settings, InvalidInput> {
        let flags = Flags { account_id: Some("429071895007".into()), region: None };
        resolve(identity(stack), &flags, &config(text), env, deployed)
    }

    #[test]
    fn the_chain_profile_supplies_rpc_and_contracts_without_a_note() {
        for (stack, chain) in [(Stack::Prod, "heima"), (Stack::Base, "base"), (Stack::Test { slot: 2 }, "heima")] {
            let s = resolve_with(stack, "", None, None).expect("resolves with no configuration");
            let p = chains::profile(chain).expect("profile");
            assert_eq!(s.rpc_http, p.default_rpc_http);
            for name in chains::CORE_CONTRACTS.iter().chain(chains::OPTIONAL_CONTRACTS.iter()) {
                assert_eq!(s.addresses.get(*name).map(String::as_str), chains::default_address(chain, name), "{name}");
            }
            assert!(s.notes.is_empty(), "overriding nothing an operator wrote: {:?}", s.notes);
        }
    }

    #[test]
    fn configuration_beats_the_env_file_beats_the_deployed_unit_beats_the_profile() {
        let env = crate::decide::envfile::parse(
            "op.env",
            "SCOPE_CONTRACT_ADDRESS_HEIMA=0x2222222222222222222222222222222222222222\n",
        )
        .expect("env file");
        let mut unit_env = BTreeMap::new();
        unit_env
            .insert("SCOPE_CONTRACT_ADDRESS_HEIMA".to_owned(), "0x3333333333333333333333333333333333333333".to_owned());
        unit_env.insert("SIDECAR_REGISTRY_ADDRESS_HEIMA".to_owned(), String::new());
        let deployed = Deployed {
            identity: identity(Stack::Prod),
            record: "/etc/systemd/system/agentkeys-broker.service".into(),
            unit_env,
            recorded_account_id: None,
        };
        let conf = "[chain.addresses]\nSCOPE_CONTRACT = \"0x1111111111111111111111111111111111111111\"\n";
        let s = resolve_with(Stack::Prod, conf, Some(&env), Some(&deployed)).expect("resolves");
        assert_eq!(s.addresses["SCOPE_CONTRACT"], "0x1111111111111111111111111111111111111111");
        assert!(s.notes.iter().any(|n| n.contains("overrides 0x2222")), "the env file's value is noted: {:?}", s.notes);
        let s = resolve_with(Stack::Prod, "", Some(&env), Some(&deployed)).expect("resolves");
        assert_eq!(s.addresses["SCOPE_CONTRACT"], "0x2222222222222222222222222222222222222222");
        let s = resolve_with(Stack::Prod, "", None, Some(&deployed)).expect("resolves");
        assert_eq!(s.addresses["SCOPE_CONTRACT"], "0x3333333333333333333333333333333333333333");
        // The old script's empty assignment is no value: the profile decides.
        assert_eq!(
            s.addresses["SIDECAR_REGISTRY"],
            chains::default_address("heima", "SIDECAR_REGISTRY").unwrap_or_default()
        );
    }

    #[test]
    fn an_emptied_core_contract_is_refused_naming_the_key() {
        let e =
            resolve_with(Stack::Base, "[chain.addresses]\nK3_EPOCH_COUNTER = \"\"\n", None, None).expect_err("refused");
        let text = e.to_string();
        assert!(text.contains("K3_EPOCH_COUNTER_ADDRESS_BASE") && text.contains("exit at start"), "{text}");
        let ok = resolve_with(Stack::Base, "[chain.addresses]\nENTRYPOINT = \"\"\n", None, None).expect("optional");
        assert!(!ok.addresses.contains_key("ENTRYPOINT"), "an emptied optional contract is left out");
    }

    #[test]
    fn only_optional_services_can_be_switched_off() {
        let s = resolve_with(Stack::Prod, "[services.agentkeys-worker-channel]\nenabled = false\n", None, None);
        assert_eq!(s.expect("resolves").switched_off, ["agentkeys-worker-channel"]);
        let e = resolve_with(Stack::Prod, "[services.agentkeys-broker]\nenabled = false\n", None, None);
        assert!(e.expect_err("refused").to_string().contains("required"));
        let s = resolve_with(Stack::Prod, "", None, None).expect("resolves");
        assert!(
            !s.is_enabled(crate::decide::catalog::CHANNEL) && s.is_enabled("agentkeys-broker"),
            "until the run enables it"
        );
    }
}
