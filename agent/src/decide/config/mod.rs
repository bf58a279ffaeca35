//! hostd configuration: `/etc/agentkeys/hostd.toml` plus `hostd.d/*.toml` drop-ins, merged field by
//! field (later files win), each value remembering which file set it.

mod fragments;

use std::collections::BTreeMap;

pub(crate) use fragments::Fragment;

use crate::decide::error::{InvalidInput, Source};

/// A value with the file and key it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FromFile<T> {
    pub value: T,
    pub file: String,
    pub key: String,
}

impl<T> FromFile<T> {
    pub fn source(&self) -> Source {
        Source::Config { file: self.file.clone(), key: self.key.clone() }
    }
}

/// The merged configuration, not yet validated against identity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    pub stack: Option<FromFile<String>>,
    pub slot: Option<FromFile<u32>>,
    pub zone: Option<FromFile<String>>,
    pub issuer_url: Option<FromFile<String>>,
    pub account_id: Option<FromFile<String>>,
    pub region: Option<FromFile<String>>,
    pub chain: Option<FromFile<String>>,
    pub rpc_http: Option<FromFile<String>>,
    pub addresses: BTreeMap<String, FromFile<String>>,
    pub buckets: BTreeMap<String, FromFile<String>>,
    pub email_from_address: Option<FromFile<String>>,
    pub proxy_read_timeout_secs: Option<FromFile<u32>>,
    pub bin_dir: Option<FromFile<String>>,
    pub hostd_bin: Option<FromFile<String>>,
    pub nginx_ipv6: Option<FromFile<bool>>,
    pub nginx_http2: Option<FromFile<String>>,
    pub nginx_tls_profile: Option<FromFile<String>>,
    pub acme_directory_url: Option<FromFile<String>>,
    pub acme_ca_bundle: Option<FromFile<String>>,
    pub acme_contact_email: Option<FromFile<String>>,
    pub acme_public_ipv4: Option<FromFile<String>>,
    pub acme_resolver: Option<FromFile<String>>,
    pub acme_imds_endpoint: Option<FromFile<String>>,
    pub acme_profile: Option<FromFile<String>>,
    pub acme_eab_kid: Option<FromFile<String>>,
    pub release_keys: Option<FromFile<Vec<String>>>,
    pub escrow_enabled: Option<FromFile<bool>>,
    pub acme_eab_hmac_key_file: Option<FromFile<String>>,
    pub acme_fallback_directory_url: Option<FromFile<String>>,
    pub acme_fallback_ca_bundle: Option<FromFile<String>>,
    pub acme_fallback_eab_kid: Option<FromFile<String>>,
    pub acme_fallback_eab_hmac_key_file: Option<FromFile<String>>,
    pub daemon_drift_interval_secs: Option<FromFile<u64>>,
    pub daemon_debounce_ms: Option<FromFile<u64>>,
    pub daemon_renewal_jitter_secs: Option<FromFile<u64>>,
    pub daemon_metrics_listen: Option<FromFile<String>>,
    /// unit → key → value.
    pub service_env: BTreeMap<String, BTreeMap<String, FromFile<String>>>,
    /// unit → `services.<unit>.enabled`.
    pub service_enabled: BTreeMap<String, FromFile<bool>>,
    /// unit → input name → `services.<unit>.inputs.<name>` (a file name).
    pub service_inputs: BTreeMap<String, BTreeMap<String, FromFile<String>>>,
}

/// Parse one file. TOML errors already name the line and key.
pub(crate) fn parse_fragment(file: &str, text: &str) -> Result<Fragment, InvalidInput> {
    toml::from_str(text).map_err(|e| {
        let (key, line) = e.span().map_or((String::new(), 0), |s| key_at(text, s.start));
        let at = if line > 0 { format!(" (line {line})") } else { String::new() };
        InvalidInput::new(Source::Config { file: file.to_owned(), key }, format!("{}{at}", e.message().trim()))
    })
}

/// The key written on the line holding byte `pos` (the text before `=`, or the table header).
fn key_at(text: &str, pos: usize) -> (String, usize) {
    let pos = pos.min(text.len());
    let line_no = text[..pos].matches('\n').count() + 1;
    let line = text.lines().nth(line_no - 1).unwrap_or_default();
    let key = line.split_once('=').map_or(line, |(k, _)| k).trim().trim_matches(['[', ']']);
    (key.to_owned(), line_no)
}

/// Merge files in the order given (main file first, then drop-ins sorted by name).
pub(crate) fn merge(files: &[(String, Fragment)]) -> Config {
    let mut c = Config::default();
    for (file, frag) in files {
        let set = |key: &str| (file.clone(), key.to_owned());
        macro_rules! take {
            ($dst:expr, $src:expr, $key:expr) => {
                if let Some(v) = $src.clone() {
                    let (file, key) = set($key);
                    $dst = Some(FromFile { value: v, file, key });
                }
            };
        }
        if let Some(i) = &frag.identity {
            take!(c.stack, i.stack, "identity.stack");
            take!(c.slot, i.slot, "identity.slot");
            take!(c.zone, i.zone, "identity.zone");
            take!(c.issuer_url, i.issuer_url, "identity.issuer_url");
        }
        if let Some(a) = &frag.aws {
            take!(c.account_id, a.account_id, "aws.account_id");
            take!(c.region, a.region, "aws.region");
        }
        if let Some(ch) = &frag.chain {
            take!(c.chain, ch.name, "chain.name");
            take!(c.rpc_http, ch.rpc_http, "chain.rpc_http");
            for (name, addr) in ch.addresses.iter().flatten() {
                let key = format!("chain.addresses.{name}");
                c.addresses.insert(name.clone(), FromFile { value: addr.clone(), file: file.clone(), key });
            }
        }
        if let Some(b) = &frag.buckets {
            for (class, v) in [
                ("mail", &b.mail),
                ("vault", &b.vault),
                ("memory", &b.memory),
                ("config", &b.config),
                ("channel", &b.channel),
            ] {
                if let Some(v) = v {
                    let key = format!("buckets.{class}");
                    c.buckets.insert(class.to_owned(), FromFile { value: v.clone(), file: file.clone(), key });
                }
            }
        }
        if let Some(b) = &frag.broker {
            take!(c.email_from_address, b.email_from_address, "broker.email_from_address");
            take!(c.proxy_read_timeout_secs, b.proxy_read_timeout_secs, "broker.proxy_read_timeout_secs");
        }
        if let Some(p) = &frag.paths {
            take!(c.bin_dir, p.bin_dir, "paths.bin_dir");
            take!(c.hostd_bin, p.hostd_bin, "paths.hostd_bin");
        }
        if let Some(e) = &frag.escrow {
            take!(c.escrow_enabled, e.enabled, "escrow.enabled");
        }
        if let Some(r) = &frag.release {
            take!(c.release_keys, r.keys, "release.keys");
        }
        if let Some(a) = &frag.acme {
            take!(c.acme_directory_url, a.directory_url, "acme.directory_url");
            take!(c.acme_ca_bundle, a.ca_bundle, "acme.ca_bundle");
            take!(c.acme_contact_email, a.contact_email, "acme.contact_email");
            take!(c.acme_public_ipv4, a.public_ipv4, "acme.public_ipv4");
            take!(c.acme_resolver, a.resolver, "acme.resolver");
            take!(c.acme_imds_endpoint, a.imds_endpoint, "acme.imds_endpoint");
            take!(c.acme_profile, a.profile, "acme.profile");
            take!(c.acme_eab_kid, a.eab_kid, "acme.eab_kid");
            take!(c.acme_eab_hmac_key_file, a.eab_hmac_key_file, "acme.eab_hmac_key_file");
            if let Some(f) = &a.fallback {
                take!(c.acme_fallback_directory_url, f.directory_url, "acme.fallback.directory_url");
                take!(c.acme_fallback_ca_bundle, f.ca_bundle, "acme.fallback.ca_bundle");
                take!(c.acme_fallback_eab_kid, f.eab_kid, "acme.fallback.eab_kid");
                take!(c.acme_fallback_eab_hmac_key_file, f.eab_hmac_key_file, "acme.fallback.eab_hmac_key_file");
            }
        }
        for (unit, svc) in frag.services.iter().flatten() {
            if let Some(on) = svc.enabled {
                let key = format!("services.{unit}.enabled");
                c.service_enabled.insert(unit.clone(), FromFile { value: on, file: file.clone(), key });
            }
            for (k, v) in svc.environment.iter().flatten() {
                let key = format!("services.{unit}.environment.{k}");
                c.service_env
                    .entry(unit.clone())
                    .or_default()
                    .insert(k.clone(), FromFile { value: v.clone(), file: file.clone(), key });
            }
            for (k, v) in svc.inputs.iter().flatten() {
                let key = format!("services.{unit}.inputs.{k}");
                c.service_inputs
                    .entry(unit.clone())
                    .or_default()
                    .insert(k.clone(), FromFile { value: v.clone(), file: file.clone(), key });
            }
        }
        if let Some(d) = &frag.daemon {
            take!(c.daemon_drift_interval_secs, d.drift_interval_secs, "daemon.drift_interval_secs");
            take!(c.daemon_debounce_ms, d.debounce_ms, "daemon.debounce_ms");
            take!(c.daemon_renewal_jitter_secs, d.renewal_jitter_secs, "daemon.renewal_jitter_secs");
            take!(c.daemon_metrics_listen, d.metrics_listen, "daemon.metrics_listen");
        }
        if let Some(n) = &frag.nginx {
            take!(c.nginx_ipv6, n.ipv6, "nginx.ipv6");
            take!(c.nginx_http2, n.http2, "nginx.http2");
            take!(c.nginx_tls_profile, n.tls_profile, "nginx.tls_profile");
        }
    }
    c
}

/// Parse and merge `(file, text)` pairs in order.
pub fn load(files: &[(String, String)]) -> Result<Config, InvalidInput> {
    let frags =
        files.iter().map(|(f, t)| parse_fragment(f, t).map(|frag| (f.clone(), frag))).collect::<Result<Vec<_>, _>>()?;
    Ok(merge(&frags))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropins_override_field_by_field() {
        let base = ("hostd.toml".to_owned(), "[aws]\naccount_id = \"429071895007\"\nregion = \"us-east-1\"\n[chain.addresses]\nSCOPE_CONTRACT = \"0x1\"\n".to_owned());
        let drop = (
            "hostd.d/10-region.toml".to_owned(),
            "[aws]\nregion = \"eu-west-1\"\n[chain.addresses]\nSIDECAR_REGISTRY = \"0x2\"\n".to_owned(),
        );
        let c = load(&[base, drop]).expect("loads");
        assert_eq!(c.account_id.as_ref().map(|v| v.value.as_str()), Some("429071895007"));
        let region = c.region.expect("region");
        assert_eq!((region.value.as_str(), region.file.as_str()), ("eu-west-1", "hostd.d/10-region.toml"));
        assert_eq!(c.addresses.len(), 2);
    }

    #[test]
    fn unknown_keys_and_wrong_types_name_the_key_and_line() {
        let err = load(&[("hostd.toml".into(), "[aws]\nacount_id = \"1\"\n".into())]).expect_err("unknown key");
        let msg = err.to_string();
        assert!(msg.contains("acount_id") && msg.contains("hostd.toml") && msg.contains("line 2"), "{msg}");
        let err = load(&[("hostd.toml".into(), "[identity]\nslot = \"two\"\n".into())]).expect_err("type");
        assert!(err.to_string().contains("slot"), "{err}");
    }
}
