//! One converge: observe the host, decide the identity and settings, render, plan, apply.
//! `--dry-run` is the same path stopped before apply.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::decide::config::{self, Config};
use crate::decide::envfile::{self, EnvFile};
use crate::decide::error::{InvalidInput, Source};
use crate::decide::identity::{self, Deployed, Selectors};
use crate::decide::inputs::{self, Handover, InputFiles, Presence};
use crate::decide::naming::Identity;
use crate::decide::observed::{Observed, Runtime, ServiceFacts};
use crate::decide::plan::{self, Plan};
use crate::decide::render::{self, DesiredHost, HostFacts};
use crate::decide::settings::{self, Flags, Settings};
use crate::host::accounts::AccountDb;
use crate::host::fs::Root;
use crate::{decide::catalog, decide::paths, decide::secrets, host::observe};

/// Everything a run was asked to do.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub selectors: Selectors,
    pub flags: Flags,
    /// An operator env file, read from the invoking user's filesystem (not the root).
    pub env_file: Option<PathBuf>,
    pub options: plan::Options,
}

/// The inputs read before deciding anything.
#[derive(Debug)]
pub(crate) struct Inputs {
    pub config: Config,
    pub env: Option<EnvFile>,
    pub deployed: Option<Deployed>,
}

/// Read configuration, the env file and the deployed identity.
pub(crate) fn read_inputs(root: &Root, req: &Request) -> anyhow::Result<Inputs> {
    let env = match &req.env_file {
        Some(path) => {
            let shown = path.display().to_string();
            let text = read_prefix(path, envfile::MAX_FILE_BYTES + 1).map_err(|e| {
                // A path the operator typed that cannot be read is invalid input (exit 2), not a
                // failure of the host.
                InvalidInput::new(Source::Flag("--env-file".into()), format!("cannot read {shown}: {e}"))
            })?;
            if text.len() > envfile::MAX_FILE_BYTES {
                let reason =
                    format!("{shown} is larger than {} bytes; is it the operator env file?", envfile::MAX_FILE_BYTES);
                return Err(InvalidInput::new(Source::Flag("--env-file".into()), reason).into());
            }
            let text = String::from_utf8(text).map_err(|_| {
                InvalidInput::new(Source::Flag("--env-file".into()), format!("{shown} is not UTF-8 text"))
            })?;
            Some(envfile::parse(&shown, &text)?)
        }
        None => None,
    };
    let config = config::load(&observe::config_files(root)?)?;
    let deployed = identity::deployed(&observe::host_records(root)?)?;
    Ok(Inputs { config, env, deployed })
}

/// The first `limit` bytes of `path`, so a wrong path (a log, a device) is never read whole.
fn read_prefix(path: &std::path::Path, limit: usize) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut text = Vec::new();
    std::fs::File::open(path)?.take(limit as u64).read_to_end(&mut text)?;
    Ok(text)
}

/// Decide the identity (the cross-wire guard).
pub(crate) fn decide_identity(req: &Request, inputs: &Inputs) -> anyhow::Result<Identity> {
    identity::resolve(&req.selectors, &inputs.config, inputs.env.as_ref(), inputs.deployed.as_ref())
}

/// The decided state of one run.
#[derive(Debug)]
pub struct Prepared {
    pub settings: Settings,
    pub facts: HostFacts,
    pub desired: DesiredHost,
    pub plan: Plan,
    pub adopted: bool,
    pub observed: Observed,
}

fn csprng() -> anyhow::Result<[u8; 32]> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| anyhow::anyhow!("failed to read the OS random number generator: {e}"))?;
    Ok(b)
}

/// Observes systemd-side facts once the settings are known (`None` with `--no-systemd`).
pub(crate) type RuntimeProbe<'a> = &'a dyn Fn(&Settings) -> anyhow::Result<Runtime>;

/// SHA-256 of a file, hex; `None` when it does not exist.
pub(crate) fn sha256_file(root: &Root, path: &str) -> anyhow::Result<Option<String>> {
    use sha2::Digest;
    Ok(root.read(path)?.map(|b| sha2::Sha256::digest(&b).iter().map(|x| format!("{x:02x}")).collect()))
}

/// Read the systemd-side facts: unit states, binary hashes, the pending marker, keypairs.
pub(crate) async fn observe_runtime(
    sd: &impl crate::host::systemd::Manager,
    root: &Root,
    settings: &Settings,
    state: &crate::host::state::State,
) -> anyhow::Result<Runtime> {
    let mut rt = Runtime::default();
    for svc in settings.services() {
        let unit = sd.unit_state(&format!("{}.service", svc.unit)).await?;
        let facts = ServiceFacts {
            active: unit.is_active(),
            enabled: unit.unit_file_state == "enabled",
            binary_sha256: sha256_file(root, &format!("{}/{}", settings.bin_dir, svc.binary))?,
            previous_sha256: state.binaries.get(svc.unit).cloned(),
        };
        rt.services.insert(svc.unit.to_owned(), facts);
    }
    for svc in catalog::SERVICES.iter().filter(|s| !settings.is_enabled(s.unit)) {
        let unit = sd.unit_state(&format!("{}.service", svc.unit)).await?;
        if unit.active_state != "inactive" && unit.active_state != "failed" {
            rt.retired_running.push(svc.unit.to_owned());
        }
    }
    rt.pending_restarts = state.pending.as_ref().map(|p| p.restarts.clone()).unwrap_or_default();
    for (purpose, path) in [("oidc", paths::OIDC_KEYPAIR), ("session", paths::SESSION_KEYPAIR)] {
        if !root.path(path).exists() {
            rt.missing_keypairs.push((purpose.to_owned(), path.to_owned()));
        }
    }
    rt.nginx_active = sd.unit_state("nginx.service").await?.is_active();
    rt.ssm_agent = "not installed".into();
    for unit in ["amazon-ssm-agent.service", "snap.amazon-ssm-agent.amazon-ssm-agent.service"] {
        let s = sd.unit_state(unit).await?;
        if !s.unit_file_state.is_empty() || s.active_state != "inactive" {
            rt.ssm_agent = s.active_state;
            break;
        }
    }
    Ok(rt)
}

/// Each catalog service with its presence on this host.
pub(crate) type Presences = Vec<(&'static catalog::Service, Presence)>;

/// Which services run on this host and how their operator inputs reach them.
pub(crate) struct HostServices {
    pub presence: Presences,
    /// unit → handover, for each running service that takes inputs.
    pub handovers: BTreeMap<&'static str, Handover>,
    /// Unusable inputs of shipped, switched-on services (a run refuses to start: exit 2).
    pub refused: Vec<InvalidInput>,
}

/// Each service's presence on this host, and how the inputs of those that run reach them: a
/// required service is always on; an optional one when its binary is in `bin_dir` (the release
/// being converged to), it is not switched off and every required input exists.
pub(crate) fn host_services(
    root: &Root,
    bin_dir: &str,
    switched_off: &[String],
    input_files: &InputFiles,
) -> anyhow::Result<HostServices> {
    let mut out = HostServices { presence: Vec::new(), handovers: BTreeMap::new(), refused: Vec::new() };
    for svc in catalog::SERVICES {
        let shipped = root.path(&format!("{bin_dir}/{}", svc.binary)).is_file();
        let off = switched_off.iter().any(|u| u == svc.unit);
        let handover = match input_files.get(svc.unit) {
            Some(files) if shipped && !off => {
                let observed = crate::host::inputs::observe(root, svc, files)?;
                Some(inputs::handover(svc, files, &observed, root.is_real_root()))
            }
            _ => None,
        };
        let p = inputs::presence(svc, shipped, off, handover.as_ref());
        match handover {
            Some(Ok(h)) if p == Presence::On => {
                out.handovers.insert(svc.unit, h);
            }
            Some(Err(e)) => out.refused.push(e),
            _ => {}
        }
        out.presence.push((svc, p));
    }
    Ok(out)
}

/// Each service's presence on a deployed host, for the commands that run without a full resolve
/// (status, doctor, the daemon's metrics): the configured binary directory, switches and input
/// names, else defaults.
pub(crate) fn presence_on(root: &Root) -> Presences {
    let config = observe::config_files(root).ok().and_then(|f| config::load(&f).ok()).unwrap_or_default();
    let bin_dir = config.bin_dir.as_ref().map_or_else(|| paths::BIN_DIR.to_owned(), |b| b.value.clone());
    let off = settings::resolve_switched_off(&config).unwrap_or_default();
    let files = inputs::files(&config).unwrap_or_else(|_| inputs::files(&Config::default()).unwrap_or_default());
    match host_services(root, &bin_dir, &off, &files) {
        Ok(h) => h.presence,
        Err(e) => catalog::SERVICES
            .iter()
            .map(|s| (s, if s.optional { Presence::Invalid { error: format!("{e:#}") } } else { Presence::On }))
            .collect(),
    }
}

/// The services that run on a deployed host (see [`presence_on`]).
pub(crate) fn services_on(root: &Root) -> Vec<&'static catalog::Service> {
    presence_on(root).into_iter().filter(|(_, p)| *p == Presence::On).map(|(s, _)| s).collect()
}

/// `p` again with other secrets (restored from the escrow, or minted and escrowed): rendered,
/// observed and planned anew; keypairs installed as files are no longer minted by the broker.
pub(crate) fn with_secrets(
    root: &Root,
    accounts: &dyn AccountDb,
    req: &Request,
    p: Prepared,
    secrets: secrets::Secrets,
) -> anyhow::Result<Prepared> {
    let mut facts = p.facts;
    facts.secrets = secrets;
    let desired = render::render(&p.settings, &facts)?;
    let mut observed = observe::observe(root, accounts, &desired)?;
    observed.runtime = p.observed.runtime.map(|mut rt| {
        rt.missing_keypairs.retain(|(_, path)| !facts.secrets.keypairs.contains_key(path));
        rt
    });
    let plan = plan::plan(&desired, &observed, req.options);
    Ok(Prepared { settings: p.settings, facts, desired, plan, adopted: p.adopted, observed })
}

/// Everything up to (not including) apply.
pub fn prepare(
    root: &Root,
    accounts: &dyn AccountDb,
    req: &Request,
    runtime: Option<RuntimeProbe<'_>>,
) -> anyhow::Result<Prepared> {
    let inputs = read_inputs(root, req)?;
    let identity = decide_identity(req, &inputs)?;
    let mut settings =
        settings::resolve(identity, &req.flags, &inputs.config, inputs.env.as_ref(), inputs.deployed.as_ref())?;
    let services = host_services(root, &settings.bin_dir, &settings.switched_off, &settings.input_files)?;
    if let Some(refused) = services.refused.into_iter().next() {
        return Err(refused.into());
    }
    settings.presence = services.presence.into_iter().filter(|(s, _)| s.optional).map(|(s, p)| (s.unit, p)).collect();
    settings.escrow = settings::escrow_on(&inputs.config, root.is_real_root());
    let keks: Vec<catalog::KekSpec> = catalog::keks()
        .map(|k| catalog::KekSpec { generate: k.generate && settings.is_enabled(k.unit), ..k })
        .collect();
    let secrets = secrets::resolve(&observe::existing_secrets(root)?, paths::DEV_KEY_SERVICE_ENV, &keks, &mut csprng)?;
    let platform = crate::decide::platform::decide(&crate::host::platform::observe(root)?, settings.nginx_http2);
    let facts = HostFacts {
        secrets,
        tls: observe::tls_states(root, &settings.identity, settings.services()),
        login: observe::login_facts(root, platform.default_user.as_deref())?,
        platform,
        template_overrides: observe::template_overrides(root)?,
        inputs: services.handovers,
    };
    let desired = render::render(&settings, &facts)?;
    let mut observed = observe::observe(root, accounts, &desired)?;
    observed.runtime = runtime.map(|probe| probe(&settings)).transpose()?;
    let plan = plan::plan(&desired, &observed, req.options);
    let adopted = inputs.deployed.as_ref().is_some_and(|d| d.recorded_account_id.is_none());
    Ok(Prepared { settings, facts, desired, plan, adopted, observed })
}
