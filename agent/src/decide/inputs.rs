//! Operator-authored inputs of the optional services (MCP server, gate, channel gateway): where
//! each lives, whether it is there and well-formed, and how it reaches its service. Pure: the
//! files are read by `host::inputs`; nothing here names a value in a message.

use std::collections::BTreeMap;

use sha2::Digest;

use crate::decide::catalog::{Delivery, Format, Input, SERVICES, Service};
use crate::decide::config::Config;
use crate::decide::error::{InvalidInput, Source};

/// unit → input name → the file that holds it (absolute).
pub type InputFiles = BTreeMap<&'static str, BTreeMap<&'static str, String>>;

/// One input file as found on the host.
#[derive(Clone, PartialEq, Eq)]
pub struct FileFact {
    pub content: Vec<u8>,
    /// Permission bits.
    pub mode: u32,
    pub uid: u32,
}

impl std::fmt::Debug for FileFact {
    // Inputs are secrets: never print their content.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FileFact({} bytes, {:04o}, uid {})", self.content.len(), self.mode, self.uid)
    }
}

/// What the host holds for one service's inputs: each input file (None: absent) and whether the
/// live copy of each seeded input exists in the service's state directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    pub files: BTreeMap<String, Option<FileFact>>,
    pub live: BTreeMap<String, bool>,
}

/// How one service's inputs reach it on this host.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Handover {
    /// Required inputs whose file is absent (the service waits for them).
    pub missing: Vec<String>,
    /// (variable, value) for its env file: values, credential paths and live seed paths.
    pub env: Vec<(String, String)>,
    /// (credential id, source file) for `LoadCredential=`.
    pub credentials: Vec<(String, String)>,
    /// (live path, content) of seeds whose live copy does not exist yet.
    pub seeds: Vec<(String, String)>,
    /// SHA-256 over the credentials' contents: a change restarts the service.
    pub digest: Option<String>,
}

impl std::fmt::Debug for Handover {
    // Values and seeds are secrets: only their names.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys: Vec<&str> = self.env.iter().map(|(k, _)| k.as_str()).collect();
        let seeds: Vec<&str> = self.seeds.iter().map(|(p, _)| p.as_str()).collect();
        f.debug_struct("Handover")
            .field("missing", &self.missing)
            .field("env", &keys)
            .field("credentials", &self.credentials)
            .field("seeds", &seeds)
            .finish()
    }
}

/// Whether an optional service runs here, and if not, why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Presence {
    /// Required, or optional with its binary shipped, not switched off and every input present.
    On,
    /// Shipped and not switched off, but these required input files are absent.
    Waiting { missing: Vec<String> },
    /// An input is unusable (the run refuses to start until it is fixed).
    Invalid { error: String },
    /// `services.<unit>.enabled = false`.
    Off,
    /// The release does not ship its binary.
    NotShipped,
}

impl Presence {
    pub fn name(&self) -> &'static str {
        match self {
            Presence::On => "on",
            Presence::Waiting { .. } => "waiting",
            Presence::Invalid { .. } => "invalid",
            Presence::Off => "off",
            Presence::NotShipped => "not shipped",
        }
    }

    /// One line for status and doctor.
    pub fn describe(&self, unit: &str) -> String {
        match self {
            Presence::On => "on".into(),
            Presence::Waiting { missing } => format!("waiting for {}", missing.join(", ")),
            Presence::Invalid { error } => format!("refused: {error}"),
            Presence::Off => format!("off (services.{unit}.enabled = false)"),
            Presence::NotShipped => "not shipped in the release".into(),
        }
    }
}

/// Decide `svc`'s presence from what the host holds (`handover`: its inputs, for a service that
/// takes some and is shipped and not switched off).
pub fn presence(
    svc: &Service,
    shipped: bool,
    switched_off: bool,
    handover: Option<&Result<Handover, InvalidInput>>,
) -> Presence {
    if !svc.optional {
        return Presence::On;
    }
    match (shipped, switched_off, handover) {
        (false, _, _) => Presence::NotShipped,
        (true, true, _) => Presence::Off,
        (true, false, Some(Err(e))) => Presence::Invalid { error: e.to_string() },
        (true, false, Some(Ok(h))) if !h.missing.is_empty() => Presence::Waiting { missing: h.missing.clone() },
        (true, false, _) => Presence::On,
    }
}

/// The files of every input of every service: the configured name, else the default one.
pub fn files(config: &Config) -> Result<InputFiles, InvalidInput> {
    for (unit, names) in &config.service_inputs {
        let (_, any) = names.iter().next().expect("a unit entry has at least one input");
        let Some(svc) = crate::decide::catalog::service(unit) else {
            return Err(InvalidInput::new(any.source(), format!("{unit:?} is not a managed service")));
        };
        if svc.inputs.is_empty() {
            let takes: Vec<&str> = SERVICES.iter().filter(|s| !s.inputs.is_empty()).map(|s| s.unit).collect();
            return Err(InvalidInput::new(
                any.source(),
                format!("{unit} takes no operator inputs (these do: {})", takes.join(", ")),
            ));
        }
        for (name, file) in names {
            if !svc.inputs.iter().any(|i| i.name == name) {
                let known: Vec<&str> = svc.inputs.iter().map(|i| i.name).collect();
                return Err(InvalidInput::new(
                    file.source(),
                    format!("{name:?} is not an input of {unit} ({})", known.join(", ")),
                ));
            }
            check_file_name(&file.source(), &file.value)?;
        }
    }
    let mut out = InputFiles::new();
    for svc in SERVICES.iter().filter(|s| !s.inputs.is_empty()) {
        let configured = config.service_inputs.get(svc.unit);
        let dir = crate::decide::catalog::input_dir(svc);
        let names = svc
            .inputs
            .iter()
            .map(|i| {
                let file = configured.and_then(|c| c.get(i.name)).map_or(i.file, |f| f.value.as_str());
                (i.name, format!("{dir}/{file}"))
            })
            .collect();
        out.insert(svc.unit, names);
    }
    Ok(out)
}

/// A file name inside the service's input directory: no path, nothing hidden.
fn check_file_name(source: &Source, name: &str) -> Result<(), InvalidInput> {
    let good = !name.is_empty()
        && name.len() <= 100
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if good {
        Ok(())
    } else {
        Err(InvalidInput::new(
            source.clone(),
            format!("{name:?} must be a file name in the service's input directory (A-Z a-z 0-9 . _ -, no path)"),
        ))
    }
}

/// How `svc`'s inputs reach it, or the input that is unusable (bad mode, owner or format).
/// `real_root`: ownership is checked only on a real host (a laid-out tree belongs to its user).
pub fn handover(
    svc: &Service,
    files: &BTreeMap<&'static str, String>,
    observed: &Observed,
    real_root: bool,
) -> Result<Handover, InvalidInput> {
    let mut out = Handover::default();
    let mut digest = sha2::Sha256::new();
    for input in svc.inputs {
        let path = &files[input.name];
        let source = Source::Host { file: path.clone(), detail: format!("input {} of {}", input.name, svc.unit) };
        let fact = observed.files.get(path).and_then(Option::as_ref);
        if let Some(f) = fact {
            check_access(&source, f, real_root)?;
            check_format(&source, input, &f.content)?;
        }
        match (input.delivery, fact) {
            (Delivery::Seed(var), _) => {
                let live = live_path(svc, input);
                let live_exists = observed.live.get(&live).copied().unwrap_or(false);
                match fact {
                    Some(f) if !live_exists => {
                        out.seeds.push((live.clone(), String::from_utf8_lossy(&f.content).into()))
                    }
                    None if input.required && !live_exists => out.missing.push(path.clone()),
                    _ => {}
                }
                out.env.push((var.into(), live));
            }
            (_, None) if input.required => out.missing.push(path.clone()),
            (_, None) => {}
            (Delivery::Credential(var), Some(f)) => {
                let id = input.name.to_owned();
                digest.update(id.as_bytes());
                digest.update((f.content.len() as u64).to_be_bytes());
                digest.update(&f.content);
                out.env.push((var.into(), format!("/run/credentials/{}.service/{id}", svc.unit)));
                out.credentials.push((id, path.clone()));
            }
            (Delivery::EnvValue(var), Some(f)) => {
                out.env.push((var.into(), String::from_utf8_lossy(&f.content).trim().to_owned()));
            }
        }
    }
    if !out.credentials.is_empty() {
        out.digest = Some(digest.finalize().iter().map(|b| format!("{b:02x}")).collect());
    }
    Ok(out)
}

/// Where the live copy of a seeded input lives (the service rewrites it there).
pub fn live_path(svc: &Service, input: &Input) -> String {
    format!("{}/{}", crate::decide::catalog::state_dir(svc), input.file)
}

fn check_access(source: &Source, f: &FileFact, real_root: bool) -> Result<(), InvalidInput> {
    if f.mode & 0o077 != 0 {
        return Err(InvalidInput::new(
            source.clone(),
            format!("is open to group or others (mode {:04o}); run chmod 600 on it", f.mode & 0o7777),
        ));
    }
    if real_root && f.uid != 0 {
        return Err(InvalidInput::new(
            source.clone(),
            format!("is owned by uid {}, not root; run chown root:root on it", f.uid),
        ));
    }
    Ok(())
}

/// Check an input's content without ever quoting it.
fn check_format(source: &Source, input: &Input, content: &[u8]) -> Result<(), InvalidInput> {
    let bad = |why: String| Err(InvalidInput::new(source.clone(), why));
    let Ok(text) = std::str::from_utf8(content) else {
        return bad("is not UTF-8 text".into());
    };
    let one_line = text.trim();
    if one_line.is_empty() {
        return bad("is empty".into());
    }
    match input.format {
        Format::Any => Ok(()),
        Format::Token => {
            if one_line.bytes().all(|b| b.is_ascii_graphic()) {
                Ok(())
            } else {
                bad("must hold one token: one line of printable ASCII without spaces".into())
            }
        }
        Format::VendorTokens => {
            if one_line.contains('\n') || one_line.bytes().any(|b| b.is_ascii_control()) {
                return bad("must be one line of vendor:token pairs separated by commas".into());
            }
            // Upstream skips empty entries and trims each; an entry without `:` stops it with an
            // error that prints the entry, token and all — so it is refused here, by position.
            for (n, entry) in one_line.split(',').map(str::trim).enumerate() {
                if entry.is_empty() {
                    continue;
                }
                let good = entry
                    .split_once(':')
                    .is_some_and(|(vendor, token)| !vendor.trim().is_empty() && !token.trim().is_empty());
                if !good {
                    return bad(format!("entry {} is not vendor:token (both non-empty)", n + 1));
                }
            }
            Ok(())
        }
        Format::Omni => {
            let hex = one_line.strip_prefix("0x").unwrap_or("");
            if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                Ok(())
            } else {
                bad("must be 0x followed by 64 hex digits (the operator's omni account)".into())
            }
        }
        Format::JsonObject => match serde_json::from_str::<serde_json::Value>(text) {
            Ok(serde_json::Value::Object(_)) => Ok(()),
            Ok(_) => bad("must be a JSON object".into()),
            Err(e) => bad(format!("is not JSON (line {}, column {})", e.line(), e.column())),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::catalog::{GATE, GATEWAY, MCP_SERVER, service};

    fn fact(content: &str) -> Option<FileFact> {
        Some(FileFact { content: content.as_bytes().to_vec(), mode: 0o600, uid: 0 })
    }

    fn observed(pairs: &[(&str, Option<FileFact>)]) -> Observed {
        Observed { files: pairs.iter().map(|(p, f)| ((*p).to_owned(), f.clone())).collect(), live: BTreeMap::new() }
    }

    fn defaults() -> InputFiles {
        files(&Config::default()).expect("defaults")
    }

    #[test]
    fn an_optional_service_runs_when_shipped_not_switched_off_and_not_waiting() {
        let broker = service("agentkeys-broker").expect("broker");
        assert_eq!(presence(broker, false, true, None), Presence::On, "a required service is always on");
        let channel = service(crate::decide::catalog::CHANNEL).expect("channel");
        assert_eq!(presence(channel, true, false, None), Presence::On);
        assert_eq!(presence(channel, false, false, None), Presence::NotShipped);
        assert_eq!(presence(channel, true, true, None), Presence::Off);
        let gate = service(GATE).expect("gate");
        let waiting = Ok(Handover { missing: vec!["/etc/agentkeys/gate/keys.json".into()], ..Handover::default() });
        let p = presence(gate, true, false, Some(&waiting));
        assert_eq!(p.describe(GATE), "waiting for /etc/agentkeys/gate/keys.json");
        assert_eq!(presence(gate, true, true, Some(&waiting)), Presence::Off, "off wins over waiting");
        let bad = Err(InvalidInput::new(Source::Default("x".into()), "is empty"));
        assert_eq!(presence(gate, true, false, Some(&bad)).name(), "invalid");
        assert_eq!(presence(gate, true, false, Some(&Ok(Handover::default()))), Presence::On);
    }

    #[test]
    fn every_input_has_a_default_file_in_its_service_directory() {
        let all = defaults();
        assert_eq!(all.len(), 3, "the MCP server, the gate and the gateway take inputs");
        assert_eq!(all[GATE]["upstream_api_key"], "/etc/agentkeys/gate/upstream-api-key");
        assert_eq!(all[MCP_SERVER]["vendor_tokens"], "/etc/agentkeys/mcp-server/vendor-tokens");
        assert_eq!(all[GATEWAY]["contacts"], "/etc/agentkeys/worker-channel-weixin/contacts.json");
    }

    #[test]
    fn a_missing_required_input_makes_the_service_wait_and_optional_ones_are_skipped() {
        let gate = service(GATE).expect("gate");
        let files = &defaults()[GATE];
        let o = observed(&[("/etc/agentkeys/gate/keys.json", fact("{}"))]);
        let h = handover(gate, files, &o, true).expect("valid");
        assert_eq!(h.missing, ["/etc/agentkeys/gate/upstream-api-key"]);
        let o = observed(&[
            ("/etc/agentkeys/gate/keys.json", fact("{\"keys\": []}")),
            ("/etc/agentkeys/gate/upstream-api-key", fact("sk-1\n")),
        ]);
        let h = handover(gate, files, &o, true).expect("valid");
        assert!(h.missing.is_empty());
        assert_eq!(h.credentials, [("upstream_api_key".to_owned(), files["upstream_api_key"].clone())]);
        assert_eq!(h.seeds, [("/var/lib/agentkeys/gate/keys.json".to_owned(), "{\"keys\": []}".to_owned())]);
        assert!(h.env.contains(&(
            "AGENTKEYS_GATE_UPSTREAM_API_KEY_FILE".into(),
            "/run/credentials/agentkeys-gate.service/upstream_api_key".into()
        )));
        assert!(h.env.iter().all(|(k, _)| k != "AGENTKEYS_GATE_ADMIN_TOKEN"), "absent optional input left out");
        let before = h.digest.expect("a credential is digested");
        let o2 = observed(&[
            ("/etc/agentkeys/gate/keys.json", fact("{}")),
            ("/etc/agentkeys/gate/upstream-api-key", fact("sk-2\n")),
        ]);
        assert_ne!(handover(gate, files, &o2, true).expect("valid").digest.expect("digest"), before);
    }

    #[test]
    fn a_seed_with_a_live_copy_is_never_copied_again_and_counts_as_present() {
        let gate = service(GATE).expect("gate");
        let files = &defaults()[GATE];
        let mut o = observed(&[("/etc/agentkeys/gate/upstream-api-key", fact("sk"))]);
        o.live.insert("/var/lib/agentkeys/gate/keys.json".into(), true);
        let h = handover(gate, files, &o, true).expect("valid");
        assert!(h.missing.is_empty(), "the gate's own keys file stands in for the seed");
        assert!(h.seeds.is_empty());
        let gw = service(GATEWAY).expect("gateway");
        let o = observed(&[
            ("/etc/agentkeys/worker-channel-weixin/telegram-bot-token", fact("123:abc")),
            ("/etc/agentkeys/worker-channel-weixin/operator-omni", fact(&format!("0x{}\n", "ab".repeat(32)))),
        ]);
        let h = handover(gw, &defaults()[GATEWAY], &o, true).expect("valid");
        assert!(h.missing.is_empty(), "the registry may start absent");
        assert!(h.env.contains(&(
            "AGENTKEYS_WEIXIN_CONTACT_REGISTRY_FILE".into(),
            "/var/lib/agentkeys/worker-channel-weixin/contacts.json".into()
        )));
        assert!(h.env.contains(&("AGENTKEYS_WEIXIN_OPERATOR_OMNI".into(), format!("0x{}", "ab".repeat(32)))));
    }

    #[test]
    fn bad_inputs_are_refused_by_name_without_their_value() {
        let mcp = service(MCP_SERVER).expect("mcp");
        let files = &defaults()[MCP_SERVER];
        let path = files["vendor_tokens"].clone();
        for (content, mode, uid, why) in [
            ("openai:sk-SECRET,,anthropic", 0o600, 0, "entry 3 is not vendor:token"),
            (":sk-SECRET", 0o600, 0, "entry 1 is not vendor:token"),
            ("openai:sk-SECRET\nx:y", 0o600, 0, "one line"),
            ("openai:sk-SECRET", 0o644, 0, "mode 0644"),
            ("openai:sk-SECRET", 0o600, 1000, "uid 1000"),
            ("\n", 0o600, 0, "is empty"),
        ] {
            let o = observed(&[(&path, Some(FileFact { content: content.as_bytes().to_vec(), mode, uid }))]);
            let e = handover(mcp, files, &o, true).expect_err(content).to_string();
            assert!(e.contains(why) && e.contains(&path), "{e}");
            assert!(!e.contains("SECRET"), "{e}");
        }
        let ok = observed(&[(&path, fact(" openai:sk-1, anthropic:sk-2, \n"))]);
        let h = handover(mcp, files, &ok, true).expect("upstream's own trimming accepts it");
        assert!(h.env.contains(&("MCP_VENDOR_TOKENS".into(), "openai:sk-1, anthropic:sk-2,".into())));
        let gate = service(GATE).expect("gate");
        let keys = defaults()[GATE]["keys"].clone();
        for (content, why) in [("[1]", "JSON object"), ("{\"keys\": [", "is not JSON (line 1")] {
            let e = handover(gate, &defaults()[GATE], &observed(&[(&keys, fact(content))]), true).expect_err(content);
            assert!(e.to_string().contains(why), "{e}");
        }
        let gw = service(GATEWAY).expect("gateway");
        let omni = defaults()[GATEWAY]["operator_omni"].clone();
        let e = handover(gw, &defaults()[GATEWAY], &observed(&[(&omni, fact("0x12"))]), true).expect_err("short");
        assert!(e.to_string().contains("64 hex digits"), "{e}");
    }

    #[test]
    fn the_configuration_names_files_in_the_directory_and_nothing_else() {
        let load = |toml: &str| crate::decide::config::load(&[("/etc/agentkeys/hostd.toml".into(), toml.into())]);
        let c = load("[services.agentkeys-gate.inputs]\nupstream_api_key = \"ark.key\"\n").expect("parses");
        assert_eq!(files(&c).expect("valid")[GATE]["upstream_api_key"], "/etc/agentkeys/gate/ark.key");
        for (toml, why) in [
            ("[services.agentkeys-gate.inputs]\nupstream_api_key = \"../ark.key\"\n", "must be a file name"),
            ("[services.agentkeys-gate.inputs]\nupstream_api_key = \".hidden\"\n", "must be a file name"),
            ("[services.agentkeys-gate.inputs]\napi_key = \"k\"\n", "is not an input of agentkeys-gate"),
            ("[services.agentkeys-broker.inputs]\nkey = \"k\"\n", "takes no operator inputs"),
            ("[services.agentkeys-nope.inputs]\nkey = \"k\"\n", "is not a managed service"),
        ] {
            let e = files(&load(toml).expect("parses")).expect_err(toml).to_string();
            assert!(e.contains(why) && e.contains("services.agentkeys-"), "{e}");
        }
    }
}
