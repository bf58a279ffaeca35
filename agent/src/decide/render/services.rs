//! Units and env files of the catalog's services, and the dev-key-service secret file.

use serde::Serialize;

use super::templates::{ENV_FILE, Engine, UNIT};
use super::{DesiredHost, FileKind, FileSpec, HostFacts, ROOT, Trigger};
use crate::decide::catalog::{Delivery, Env, EnvTarget, Pubkey, Restart, SERVICES, Service, Val};
use crate::decide::settings::Settings;
use crate::{decide::chains, decide::paths, decide::secrets};

#[derive(Debug, Serialize)]
struct Pair {
    key: String,
    value: String,
}

#[derive(Debug, Serialize)]
struct UnitContext<'a> {
    unit: &'a str,
    description: &'a str,
    after: &'a [&'a str],
    env_files: Vec<String>,
    environment: Vec<Pair>,
    exec_start: String,
    restart: &'static str,
    stop_timeout_secs: u64,
    loopback_ip_only: bool,
    /// `LoadCredential=` id and source file of each operator input handed over as a file.
    credentials: Vec<Pair>,
}

#[derive(Debug, Serialize)]
struct EnvContext {
    environment: Vec<Pair>,
    /// A comment line (the digest of the credentials, whose change restarts the service).
    note: Option<String>,
}

fn env_only(environment: Vec<Pair>) -> EnvContext {
    EnvContext { environment, note: None }
}

/// Resolve one value of the catalog for `svc`.
fn value(v: Val, svc: &Service, s: &Settings) -> String {
    match v {
        Val::Lit(l) => l.to_owned(),
        Val::Bind => format!("127.0.0.1:{}", svc.port),
        Val::UrlOf(unit) => {
            crate::decide::catalog::service(unit).map_or_else(String::new, |o| format!("http://127.0.0.1:{}", o.port))
        }
        Val::Bucket(class) => s.buckets.get(class).cloned().unwrap_or_default(),
        Val::RoleArn(stem) => s.identity.role_arn(stem, &s.account_id),
        Val::AccountId => s.account_id.clone(),
        Val::Region => s.region.clone(),
        Val::Issuer => s.identity.issuer(),
        Val::Sender => s.sender.clone(),
        Val::Chain => s.chain.clone(),
        Val::ChainRpc => s.rpc_http.clone(),
        Val::SessionPubkeyPath => paths::SESSION_PUBKEY.into(),
        Val::OidcKeypairPath => paths::OIDC_KEYPAIR.into(),
        Val::SessionKeypairPath => paths::SESSION_KEYPAIR.into(),
    }
}

/// The environment of `svc`, in catalog order, with empty values left out (an empty
/// `Environment=` line breaks the broker).
fn environment(svc: &Service, s: &Settings, facts: &HostFacts) -> Vec<Pair> {
    let mut out = Vec::new();
    for e in svc.env {
        match *e {
            Env::Set(key, v) => out.push(Pair { key: key.into(), value: value(v, svc, s) }),
            Env::TestOnly(key, v) if s.identity.stack.is_test() => {
                out.push(Pair { key: key.into(), value: value(v, svc, s) })
            }
            Env::TestOnly(..) => {}
            Env::ChainAddresses(names) => {
                for name in names {
                    let addr = s.addresses.get(*name).cloned().unwrap_or_default();
                    out.push(Pair { key: chains::address_key(name, &s.chain), value: addr });
                }
            }
            Env::Kek(key) | Env::LegacyKek(key) => {
                out.push(Pair { key: key.into(), value: facts.secrets.keks.get(key).cloned().unwrap_or_default() });
            }
            Env::WithService(unit, key, v) if s.is_enabled(unit) => {
                out.push(Pair { key: key.into(), value: value(v, svc, s) })
            }
            // A shared secret reaches the service through its own env file (below).
            Env::WithService(..) | Env::SharedSecret(..) => {}
        }
    }
    for (key, value) in facts.inputs.get(svc.unit).into_iter().flat_map(|h| &h.env) {
        out.push(Pair { key: key.clone(), value: value.clone() });
    }
    for (key, value) in s.service_env.get(svc.unit).into_iter().flatten() {
        out.push(Pair { key: key.clone(), value: value.clone() });
    }
    out.retain(|p| !p.value.is_empty());
    out
}

fn exec_start(svc: &Service, s: &Settings) -> String {
    let mut words = Vec::new();
    match svc.pubkey {
        Pubkey::PathArg => words.extend([
            s.hostd_bin.clone(),
            "exec-with-pubkey".into(),
            "--pem".into(),
            paths::SESSION_PUBKEY.into(),
            "--".into(),
        ]),
        Pubkey::PemEnv(var) => words.extend([
            s.hostd_bin.clone(),
            "exec-with-pubkey".into(),
            "--pem".into(),
            paths::SESSION_PUBKEY.into(),
            "--env".into(),
            var.into(),
            "--".into(),
        ]),
        Pubkey::None | Pubkey::Writes => {}
    }
    words.push(format!("{}/{}", s.bin_dir, svc.binary));
    words.extend(svc.args.iter().map(|a| value(*a, svc, s)));
    words.join(" ")
}

/// The env file of a service's shared secret, if it has one.
fn shared_secret(svc: &Service) -> Option<(&'static str, &'static str)> {
    svc.env.iter().find_map(|e| match e {
        Env::SharedSecret(key, file) => Some((*key, *file)),
        _ => None,
    })
}

/// A secret only the service user reads (0600), whose change triggers `triggers`.
fn service_secret(path: String, content: String, triggers: Vec<Trigger>) -> FileSpec {
    FileSpec {
        path,
        content,
        mode: 0o600,
        owner: paths::SERVICE_USER,
        group: paths::SERVICE_USER,
        kind: FileKind::Secret,
        triggers,
        validate: None,
    }
}

/// The state directory and first live copies of a running service's seeded inputs.
fn render_inputs(svc: &Service, handover: Option<&crate::decide::inputs::Handover>, host: &mut DesiredHost) {
    let Some(h) = handover else { return };
    if svc.inputs.iter().any(|i| matches!(i.delivery, Delivery::Seed(_))) {
        let dir = crate::decide::catalog::state_dir(svc);
        host.dirs.push(super::dir(&dir, 0o700, paths::SERVICE_USER, paths::SERVICE_USER));
    }
    for (path, content) in &h.seeds {
        host.files.push(service_secret(path.clone(), content.clone(), vec![Trigger::Restart(svc.unit.into())]));
    }
}

/// The input directories of the services that take inputs and ship in the release (root only:
/// the service gets its inputs from systemd and its env file, never from here).
fn input_dirs(s: &Settings, host: &mut DesiredHost) {
    for svc in SERVICES.iter().filter(|v| !v.inputs.is_empty()) {
        let shipped = s.presence.get(svc.unit).is_some_and(|p| *p != crate::decide::inputs::Presence::NotShipped);
        if shipped {
            host.dirs.push(super::dir(&crate::decide::catalog::input_dir(svc), 0o700, ROOT, ROOT));
        }
    }
}

/// Enabled units that read `path` as an env file.
fn readers_of(path: &str, s: &Settings) -> Vec<Trigger> {
    s.services()
        .filter(|svc| {
            svc.env_files.iter().any(|(p, _)| *p == path)
                || matches!(svc.env_target, EnvTarget::File(p) if p == path)
                || shared_secret(svc).is_some_and(|(_, f)| f == path)
        })
        .map(|svc| Trigger::Restart(svc.unit.into()))
        .collect()
}

pub(super) fn render(engine: &Engine, s: &Settings, facts: &HostFacts, host: &mut DesiredHost) -> anyhow::Result<()> {
    for svc in s.services() {
        let env = environment(svc, s, facts);
        let mut env_files: Vec<String> = svc
            .env_files
            .iter()
            .map(|(p, optional)| if *optional { format!("-{p}") } else { (*p).to_owned() })
            .collect();
        if let Some((key, file)) = shared_secret(svc) {
            env_files.push(file.to_owned());
            let value = facts.secrets.keks.get(key).cloned().unwrap_or_default();
            host.files.push(service_secret(
                file.into(),
                engine.render(ENV_FILE, &env_only(vec![Pair { key: key.into(), value }]))?,
                readers_of(file, s),
            ));
        }
        let handover = facts.inputs.get(svc.unit);
        let unit_env = match svc.env_target {
            EnvTarget::Unit => env,
            EnvTarget::File(path) => {
                env_files.push(path.to_owned());
                let has_secret = !svc.inputs.is_empty()
                    || svc.env.iter().any(|e| matches!(e, Env::Kek(_) | Env::LegacyKek(_) | Env::SharedSecret(..)));
                let note = handover
                    .and_then(|h| h.digest.as_ref())
                    .map(|d| format!("operator inputs handed over as credentials: sha256 {d}"));
                host.files.push(FileSpec {
                    path: path.into(),
                    content: engine.render(ENV_FILE, &EnvContext { environment: env, note })?,
                    mode: if has_secret { 0o600 } else { 0o640 },
                    owner: if has_secret { paths::SERVICE_USER } else { ROOT },
                    group: paths::SERVICE_USER,
                    kind: if has_secret { FileKind::Secret } else { FileKind::EnvFile },
                    triggers: vec![Trigger::Restart(svc.unit.into())],
                    validate: None,
                });
                Vec::new()
            }
        };
        let ctx = UnitContext {
            unit: svc.unit,
            description: svc.description,
            after: svc.after,
            env_files,
            environment: unit_env,
            exec_start: exec_start(svc, s),
            restart: match svc.restart {
                Restart::Always => "always",
                Restart::OnFailure => "on-failure",
            },
            stop_timeout_secs: crate::decide::catalog::STOP_TIMEOUT_SECS,
            loopback_ip_only: svc.loopback_ip_only,
            credentials: handover
                .into_iter()
                .flat_map(|h| &h.credentials)
                .map(|(id, file)| Pair { key: id.clone(), value: file.clone() })
                .collect(),
        };
        render_inputs(svc, handover, host);
        host.files.push(FileSpec {
            path: format!("{}/{}.service", paths::UNIT_DIR, svc.unit),
            content: engine.render(UNIT, &ctx)?,
            mode: 0o644,
            owner: ROOT,
            group: ROOT,
            kind: FileKind::Unit,
            triggers: vec![Trigger::UnitFile(svc.unit.into())],
            validate: None,
        });
    }
    input_dirs(s, host);
    // An optional service that no longer runs here loses its unit (and its enablement); the
    // executor stops it first. Its env files stay: they hold a KEK data may be encrypted with.
    for svc in SERVICES.iter().filter(|v| !s.is_enabled(v.unit)) {
        let reason = format!("{} is not enabled on this host", svc.unit);
        for path in [
            format!("{}/{}.service", paths::UNIT_DIR, svc.unit),
            format!("{}/multi-user.target.wants/{}.service", paths::UNIT_DIR, svc.unit),
        ] {
            let triggers = vec![Trigger::UnitFile(svc.unit.into())];
            host.absent.push(super::AbsentSpec { path, reason: reason.clone(), triggers });
        }
    }
    let master = match (&facts.secrets.master_file, &facts.secrets.new_master) {
        (Some(kept), _) => kept.clone(),
        (None, Some(fresh)) => engine
            .render(ENV_FILE, &env_only(vec![Pair { key: secrets::MASTER_SECRET_KEY.into(), value: fresh.clone() }]))?,
        (None, None) => anyhow::bail!("internal: no dev-key-service master secret resolved"),
    };
    host.files.push(service_secret(
        paths::DEV_KEY_SERVICE_ENV.into(),
        master,
        readers_of(paths::DEV_KEY_SERVICE_ENV, s),
    ));
    // Broker keypairs restored from the escrow (or minted and escrowed in this run).
    for (path, content) in &facts.secrets.keypairs {
        host.files.push(service_secret(
            path.clone(),
            content.clone(),
            vec![Trigger::Restart("agentkeys-broker".into())],
        ));
    }
    Ok(())
}
