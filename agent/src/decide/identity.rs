//! Self-identification and the cross-wire guard (spec §1.1): which stack this host is, from the
//! deployed records and the explicit input, refusing any contradiction.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::decide::config::Config;
use crate::decide::envfile::EnvFile;
use crate::decide::error::{IdentityConflict, InvalidInput, Source};
use crate::decide::naming::{Identity, MAX_SLOT, Stack, identity_from_issuer};
use crate::decide::validate;

/// Identity selectors given on the command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selectors {
    pub ci: bool,
    pub slot: Option<u32>,
    pub base: bool,
    pub zone: Option<String>,
    pub issuer_url: Option<String>,
}

/// The identity a host already carries, and where it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployed {
    pub identity: Identity,
    /// The file the identity was read from.
    pub record: String,
    /// `Environment=` of the deployed broker unit (empty when only hostd's record exists).
    pub unit_env: BTreeMap<String, String>,
    /// Account id from hostd's own record, if any.
    pub recorded_account_id: Option<String>,
}

/// hostd's own record of the identity, stored next to its state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Record {
    pub issuer: String,
    pub account_id: String,
}

/// What the host holds: the broker unit, hostd's record, and whether the deployed one-shot secret
/// under `/etc/agentkeys` exists (removing `/etc/agentkeys` is how a host is re-purposed).
#[derive(Debug, Clone, Default)]
pub struct HostRecords {
    pub broker_unit: Option<(String, String)>,
    pub record: Option<(String, String)>,
    pub deployed_secrets_exist: bool,
}

/// Read the deployed identity out of the host's records. The broker unit's issuer is the primary
/// record (other tools read it there); hostd's record backs it up and must agree with it.
pub fn deployed(records: &HostRecords) -> Result<Option<Deployed>, anyhow::Error> {
    let record = match &records.record {
        Some((file, text)) => {
            let rec: Record = serde_json::from_str(text).map_err(|e| {
                InvalidInput::new(
                    Source::Host { file: file.clone(), detail: "identity record".into() },
                    format!("unreadable ({e}); restore it or delete it to re-read the identity from the broker unit"),
                )
            })?;
            let id = identity_from_issuer(&rec.issuer).map_err(|e| {
                InvalidInput::new(Source::Host { file: file.clone(), detail: "issuer".into() }, e.to_string())
            })?;
            Some((file.clone(), id, rec.account_id))
        }
        None => None,
    };
    let unit = match &records.broker_unit {
        Some((file, text)) => {
            let env = crate::decide::unitfile::service_environment(text);
            match env.get("BROKER_OIDC_ISSUER") {
                Some(issuer) => {
                    let id = identity_from_issuer(issuer).map_err(|e| {
                        InvalidInput::new(
                            Source::Host { file: file.clone(), detail: "Environment=BROKER_OIDC_ISSUER".into() },
                            format!("{e}; fix the unit by hand or re-purpose the host deliberately"),
                        )
                    })?;
                    Some((file.clone(), id, env))
                }
                None => None,
            }
        }
        None => None,
    };
    Ok(match (unit, record) {
        (Some((ufile, uid, env)), Some((rfile, rid, account))) => {
            if uid != rid {
                return Err(IdentityConflict {
                    deployed: uid.to_string(),
                    deployed_issuer: uid.issuer(),
                    record: ufile,
                    requested_by: format!("hostd's record {rfile}"),
                    requested: format!("{rid} (issuer {}); the unit was edited by hand", rid.issuer()),
                }
                .into());
            }
            Some(Deployed { identity: uid, record: ufile, unit_env: env, recorded_account_id: Some(account) })
        }
        (Some((file, identity, env)), None) => {
            Some(Deployed { identity, record: file, unit_env: env, recorded_account_id: None })
        }
        // The unit is gone but the deployed secrets are not: the host is still deployed.
        (None, Some((file, identity, account))) if records.deployed_secrets_exist => {
            Some(Deployed { identity, record: file, unit_env: BTreeMap::new(), recorded_account_id: Some(account) })
        }
        _ => None,
    })
}

/// One constraint on the identity from one source.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Claim {
    Stack(Stack),
    AnyTest,
    Zone(String),
    Exact(Identity),
}

impl Claim {
    fn holds_for(&self, id: &Identity) -> bool {
        match self {
            Claim::Stack(s) => id.stack == *s,
            Claim::AnyTest => id.stack.is_test(),
            Claim::Zone(z) => id.zone == *z,
            Claim::Exact(e) => e == id,
        }
    }

    fn describe(&self) -> String {
        match self {
            Claim::Stack(s) => format!("the {s} stack"),
            Claim::AnyTest => "a test stack".into(),
            Claim::Zone(z) => format!("zone {z}"),
            Claim::Exact(e) => format!("{e} (issuer {})", e.issuer()),
        }
    }
}

/// Gather every identity claim, highest precedence first, validating each value.
fn claims(sel: &Selectors, config: &Config, env: Option<&EnvFile>) -> Result<Vec<(String, Claim)>, InvalidInput> {
    let mut out = Vec::new();
    if sel.base && sel.ci {
        return Err(InvalidInput::new(
            Source::Flag("--base --ci".into()),
            "--base selects the Base production stack and --ci a test stack; they cannot be combined",
        ));
    }
    if let Some(slot) = sel.slot {
        if !sel.ci {
            return Err(InvalidInput::new(Source::Flag("--slot".into()), "--slot selects a test slot and needs --ci"));
        }
        check_slot(&Source::Flag("--slot".into()), slot)?;
        out.push((format!("--ci --slot {slot}"), Claim::Stack(Stack::Test { slot })));
    } else if sel.ci {
        out.push(("--ci".into(), Claim::AnyTest));
    } else if sel.base {
        out.push(("--base".into(), Claim::Stack(Stack::Base)));
    }
    if let Some(z) = &sel.zone {
        out.push(("--zone".into(), Claim::Zone(validate::zone(&Source::Flag("--zone".into()), z)?)));
    }
    if let Some(url) = &sel.issuer_url {
        let id = identity_from_issuer(url)
            .map_err(|e| InvalidInput::new(Source::Flag("--issuer-url".into()), e.to_string()))?;
        out.push(("--issuer-url".into(), Claim::Exact(id)));
    }
    if let Some(stack) = &config.stack {
        let src = stack.source();
        let claim = match (stack.value.as_str(), &config.slot) {
            ("prod", None) => Claim::Stack(Stack::Prod),
            ("base", None) => Claim::Stack(Stack::Base),
            ("test", None) => Claim::AnyTest,
            ("test", Some(slot)) => {
                check_slot(&slot.source(), slot.value)?;
                Claim::Stack(Stack::Test { slot: slot.value })
            }
            ("prod" | "base", Some(slot)) => {
                return Err(InvalidInput::new(slot.source(), "identity.slot is only valid with stack = \"test\""));
            }
            (other, _) => {
                return Err(InvalidInput::new(src, format!("{other:?} is not a stack (prod, test or base)")));
            }
        };
        out.push((src.to_string(), claim));
    } else if let Some(slot) = &config.slot {
        check_slot(&slot.source(), slot.value)?;
        out.push((slot.source().to_string(), Claim::Stack(Stack::Test { slot: slot.value })));
    }
    if let Some(z) = &config.zone {
        out.push((z.source().to_string(), Claim::Zone(validate::zone(&z.source(), &z.value)?)));
    }
    if let Some(u) = &config.issuer_url {
        let id = identity_from_issuer(&u.value).map_err(|e| InvalidInput::new(u.source(), e.to_string()))?;
        out.push((u.source().to_string(), Claim::Exact(id)));
    }
    if let Some(env) = env {
        if let Some(host) = env.get("BROKER_HOST") {
            let src = env.source("BROKER_HOST");
            let id = identity_from_issuer(&format!("https://{}", host.value))
                .map_err(|e| InvalidInput::new(src.clone(), e.to_string()))?;
            out.push((src.to_string(), Claim::Exact(id)));
        }
        if let Some(zone) = env.get("ZONE") {
            let src = env.source("ZONE");
            out.push((src.to_string(), Claim::Zone(validate::zone(&src, &zone.value)?)));
        }
    }
    Ok(out)
}

fn check_slot(source: &Source, slot: u32) -> Result<(), InvalidInput> {
    if (1..=MAX_SLOT).contains(&slot) {
        Ok(())
    } else {
        Err(InvalidInput::new(source.clone(), format!("slot {slot} is out of range (1..={MAX_SLOT})")))
    }
}

/// Decide the identity: adopt the deployed one (refusing contradictions, exit 3) or, on a virgin
/// host, combine the declared one (refusing disagreement between sources, exit 2).
pub(crate) fn resolve(
    sel: &Selectors,
    config: &Config,
    env: Option<&EnvFile>,
    deployed: Option<&Deployed>,
) -> Result<Identity, anyhow::Error> {
    let claims = claims(sel, config, env)?;
    if let Some(d) = deployed {
        if let Some((by, claim)) = claims.iter().find(|(_, c)| !c.holds_for(&d.identity)) {
            return Err(IdentityConflict {
                deployed: d.identity.to_string(),
                deployed_issuer: d.identity.issuer(),
                record: d.record.clone(),
                requested_by: by.clone(),
                requested: claim.describe(),
            }
            .into());
        }
        return Ok(d.identity.clone());
    }
    let stack = claims
        .iter()
        .find_map(|(_, c)| match c {
            Claim::Stack(s) => Some(*s),
            Claim::Exact(e) => Some(e.stack),
            _ => None,
        })
        .or_else(|| claims.iter().any(|(_, c)| *c == Claim::AnyTest).then_some(Stack::Test { slot: 1 }))
        .unwrap_or(Stack::Prod);
    let zone = claims
        .iter()
        .find_map(|(_, c)| match c {
            Claim::Zone(z) => Some(z.clone()),
            Claim::Exact(e) => Some(e.zone.clone()),
            _ => None,
        })
        .ok_or_else(|| {
            InvalidInput::new(
                Source::Flag("--zone".into()),
                "this host has no deployed identity yet; declare it with --zone (plus --ci [--slot N] or --base), \
                 identity.zone in hostd.toml, or ZONE in --env-file",
            )
        })?;
    let identity = Identity { stack, zone };
    identity.check_names().map_err(|r| InvalidInput::new(Source::Flag("--zone".into()), r))?;
    if let Some((by, claim)) = claims.iter().find(|(_, c)| !c.holds_for(&identity)) {
        let (first_by, first) = claims
            .iter()
            .find(|(_, c)| matches!(c, Claim::Stack(_) | Claim::Exact(_) | Claim::Zone(_)) && c.holds_for(&identity))
            .map_or(("the default".to_owned(), identity.to_string()), |(b, c)| (b.clone(), c.describe()));
        return Err(InvalidInput::new(
            Source::Flag(by.clone()),
            format!("asks for {}, but {first_by} declares {first}; make the sources agree", claim.describe()),
        )
        .into());
    }
    Ok(identity)
}

#[cfg(test)]
mod tests {
    use super::*;

    const UNIT: &str = "/etc/systemd/system/agentkeys-broker.service";
    const RECORD: &str = "/var/lib/agentkeys-hostd/identity.json";

    fn unit(issuer: &str) -> Option<(String, String)> {
        Some((UNIT.into(), format!("[Service]\nEnvironment=BROKER_OIDC_ISSUER={issuer}\nExecStart=/x\n")))
    }

    fn record(issuer: &str) -> Option<(String, String)> {
        Some((RECORD.into(), format!("{{\"issuer\":\"{issuer}\",\"account_id\":\"429071895007\"}}")))
    }

    fn deployed_slot2() -> Deployed {
        let records = HostRecords { broker_unit: unit("https://broker-test-2.litentry.org"), ..Default::default() };
        deployed(&records).expect("reads").expect("deployed")
    }

    #[test]
    fn the_unit_decides_and_the_record_must_agree() {
        let d = deployed_slot2();
        assert_eq!(d.identity.stack, Stack::Test { slot: 2 });
        assert_eq!((d.record.as_str(), d.recorded_account_id.as_deref()), (UNIT, None), "an old-script host");
        let both = HostRecords {
            broker_unit: unit("https://broker-test-2.litentry.org"),
            record: record("https://broker-test-2.litentry.org"),
            deployed_secrets_exist: true,
        };
        assert_eq!(
            deployed(&both).expect("agree").and_then(|d| d.recorded_account_id).as_deref(),
            Some("429071895007")
        );
        let edited = HostRecords { record: record("https://broker-base.litentry.org"), ..both.clone() };
        let e = deployed(&edited).expect_err("a hand-edited unit contradicts the record");
        assert!(e.downcast_ref::<IdentityConflict>().is_some(), "{e}");
        // The unit removed but the deployed secrets kept: still deployed (from the record).
        let unitless = HostRecords { broker_unit: None, ..both.clone() };
        assert_eq!(deployed(&unitless).expect("reads").map(|d| d.record).as_deref(), Some(RECORD));
        let repurposed = HostRecords { broker_unit: None, deployed_secrets_exist: false, ..both };
        assert!(deployed(&repurposed).expect("reads").is_none(), "unit and /etc/agentkeys removed: virgin");
        let bad = HostRecords { broker_unit: unit("https://broker-test-02.litentry.org"), ..Default::default() };
        assert!(deployed(&bad).is_err_and(|e| e.to_string().contains("re-purpose")));
    }

    #[test]
    fn selectors_that_contradict_the_deployed_identity_are_a_conflict() {
        let d = deployed_slot2();
        let config = Config::default();
        let ok = |sel: Selectors| resolve(&sel, &config, None, Some(&d));
        assert_eq!(ok(Selectors::default()).expect("flagless adopts").stack, Stack::Test { slot: 2 });
        assert!(ok(Selectors { ci: true, ..Default::default() }).is_ok(), "a bare --ci is consistent with slot 2");
        for sel in [
            Selectors { base: true, ..Default::default() },
            Selectors { ci: true, slot: Some(3), ..Default::default() },
            Selectors { zone: Some("example.org".into()), ..Default::default() },
        ] {
            let e = ok(sel.clone()).expect_err("contradiction");
            assert!(e.downcast_ref::<IdentityConflict>().is_some(), "{sel:?}: {e}");
        }
    }

    #[test]
    fn a_virgin_host_needs_a_zone_and_combines_agreeing_sources() {
        let config = Config::default();
        let e = resolve(&Selectors { ci: true, ..Default::default() }, &config, None, None).expect_err("no zone");
        assert!(e.to_string().contains("--zone"), "{e}");
        let sel = Selectors { ci: true, slot: Some(4), zone: Some("litentry.org".into()), ..Default::default() };
        let id = resolve(&sel, &config, None, None).expect("declared");
        assert_eq!((id.stack, id.issuer()), (Stack::Test { slot: 4 }, "https://broker-test-4.litentry.org".to_owned()));
        let env = crate::decide::envfile::parse("op.env", "ZONE=example.org\n").expect("env");
        let e = resolve(&sel, &config, Some(&env), None).expect_err("two zones");
        assert!(e.to_string().contains("make the sources agree"), "{e}");
    }
}
