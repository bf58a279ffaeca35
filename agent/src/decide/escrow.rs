//! The escrow of a stack's irreplaceable secrets (issue #20), pure: what is escrowed, the payload
//! kept in the stack's Secrets Manager secret, and what a run does given the host's values, the
//! values it would mint, the escrow's contents and hostd's record of the last verified escrow.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use crate::decide::naming::Identity;
use crate::decide::secrets::{MASTER_SECRET_KEY, Secrets};

/// The payload's format marker and version.
pub(crate) const FORMAT: u32 = 1;
/// The tag that names the stack a secret belongs to (also on the instance and the KMS key).
pub const STACK_TAG: &str = "agentkeys:stack";
/// How long a verified escrow is trusted without asking AWS again (the daily re-verification).
pub(crate) const REVERIFY_SECS: i64 = 24 * 3600;
/// First and longest wait before an unreachable escrow is tried again.
const RETRY_FIRST_SECS: i64 = 300;
const RETRY_MAX_SECS: i64 = 6 * 3600;

/// Escrowed values by name (the env key of a secret, or `broker/<file>` for a keypair) → bytes.
/// `Debug` shows names only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Items(pub BTreeMap<String, Vec<u8>>);

impl std::fmt::Debug for Items {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.keys()).finish()
    }
}

impl Items {
    pub(crate) fn names(&self) -> Vec<String> {
        self.0.keys().cloned().collect()
    }

    /// A digest of names and values (never shown as a value; kept in hostd's state to know,
    /// without asking AWS, that the host still holds what was escrowed).
    pub(crate) fn digest(&self) -> String {
        let mut h = sha2::Sha256::new();
        for (name, value) in &self.0 {
            h.update((name.len() as u64).to_be_bytes());
            h.update(name.as_bytes());
            h.update((value.len() as u64).to_be_bytes());
            h.update(value);
        }
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// The item name of a broker keypair file.
pub(crate) fn keypair_item(path: &str) -> String {
    format!("broker/{}", path.rsplit('/').next().unwrap_or(path))
}

/// The secret's JSON body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    agentkeys_escrow: u32,
    /// The CloudFormation stack name of the stack (`agentkeys-stack{S}`).
    stack: String,
    issuer: String,
    /// name → base64 of the value.
    items: BTreeMap<String, String>,
}

/// The secret's body for `items` of `id`.
pub(crate) fn encode(id: &Identity, items: &Items) -> String {
    let body = Body {
        agentkeys_escrow: FORMAT,
        stack: id.cloud_stack(),
        issuer: id.issuer(),
        items: items.0.iter().map(|(k, v)| (k.clone(), base64::engine::general_purpose::STANDARD.encode(v))).collect(),
    };
    serde_json::to_string(&body).unwrap_or_default()
}

/// The escrow's content as read: the secret is absent, exists with no value (or the empty
/// marker CloudFormation writes), or holds a payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Remote {
    Absent,
    Empty { version: Option<String> },
    Holds { version: String, body: String },
}

/// What was read, with the secret's `agentkeys:stack` tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Read {
    pub remote: Remote,
    pub tag_stack: Option<String>,
}

/// Why the escrow cannot be used as it is: refused, exit 3.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EscrowRefusal {
    #[error(
        "escrow conflict: the host's {names:?} differ from the escrow {secret} (version {version}); hostd overwrote \
         neither. If the escrow is right (this host was re-minted by hand), stop the services, move the host's files \
         aside and run reconcile to restore them; if the host is right, put its values into the escrow by hand \
         (`agentkeys-hostd escrow status` names the secret) after checking why they differ"
    )]
    Conflict { secret: String, version: String, names: Vec<String> },
    #[error(
        "escrow {secret} belongs to another stack ({found}), not {expected}: refusing to use or overwrite it; check the \
         secret's `agentkeys:stack` tag and payload, and this host's identity (`agentkeys-hostd identity`)"
    )]
    Foreign { secret: String, found: String, expected: String },
    #[error(
        "escrow {secret} holds a payload hostd cannot read ({why}); nothing was changed: inspect the secret's versions"
    )]
    Unreadable { secret: String, why: String },
}

fn parse(secret: &str, id: &Identity, body: &str) -> Result<Option<Items>, EscrowRefusal> {
    let unreadable = |why: String| EscrowRefusal::Unreadable { secret: secret.to_owned(), why };
    let b: Body = serde_json::from_str(body).map_err(|e| unreadable(format!("not an escrow payload: {e}")))?;
    if b.agentkeys_escrow != FORMAT {
        return Err(unreadable(format!("format {} (this hostd reads {FORMAT})", b.agentkeys_escrow)));
    }
    if b.stack != id.cloud_stack() || b.issuer != id.issuer() {
        return Err(EscrowRefusal::Foreign {
            secret: secret.to_owned(),
            found: format!("{} {}", b.stack, b.issuer),
            expected: format!("{} {}", id.cloud_stack(), id.issuer()),
        });
    }
    let mut items = Items::default();
    for (k, v) in b.items {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(v.as_bytes())
            .map_err(|_| unreadable(format!("item {k} is not base64")))?;
        items.0.insert(k, bytes);
    }
    Ok(if items.0.is_empty() { None } else { Some(items) })
}

/// What the run does about the escrow.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Decision {
    /// Values the escrow holds and the host lacks: written locally (this run mints none of them).
    pub restore: Items,
    /// The whole set to put into the escrow (escrowed ∪ host ∪ minted), when it lacks any of them;
    /// `create`: the secret does not exist yet.
    pub put: Option<Items>,
    pub create: bool,
    /// The escrow's version as read.
    pub version: Option<String>,
}

/// Decide from the host's values, the values this run would mint, the names this host runs with
/// (`wanted`: restored when the escrow has them) and the escrow as read. The escrow wins over a
/// fresh mint; a value both sides hold must be equal.
pub(crate) fn decide(
    secret: &str,
    id: &Identity,
    local: &Items,
    minted: &Items,
    wanted: &BTreeSet<String>,
    read: &Read,
) -> Result<Decision, EscrowRefusal> {
    if let Some(tag) = &read.tag_stack
        && *tag != id.cloud_stack()
    {
        return Err(EscrowRefusal::Foreign {
            secret: secret.to_owned(),
            found: format!("tag {STACK_TAG}={tag}"),
            expected: id.cloud_stack(),
        });
    }
    let (escrowed, version, create) = match &read.remote {
        Remote::Absent => (Items::default(), None, true),
        Remote::Empty { version } => (Items::default(), version.clone(), false),
        Remote::Holds { version, body } => (parse(secret, id, body)?.unwrap_or_default(), Some(version.clone()), false),
    };
    let conflicts: Vec<String> =
        local.0.iter().filter(|(k, v)| escrowed.0.get(*k).is_some_and(|w| w != *v)).map(|(k, _)| k.clone()).collect();
    if !conflicts.is_empty() {
        return Err(EscrowRefusal::Conflict {
            secret: secret.to_owned(),
            version: version.unwrap_or_default(),
            names: conflicts,
        });
    }
    let restore = Items(
        escrowed.0.iter().filter(|(k, _)| !local.0.contains_key(*k) && wanted.contains(*k)).map(clone_pair).collect(),
    );
    let mut all = escrowed.clone();
    for (k, v) in local.0.iter().chain(minted.0.iter().filter(|(k, _)| !local.0.contains_key(*k))) {
        all.0.entry(k.clone()).or_insert_with(|| v.clone());
    }
    let put = (all != escrowed).then_some(all);
    Ok(Decision { restore, put, create, version })
}

/// The escrow read back after a write must hold exactly what was put, for this stack.
pub(crate) fn verify_readback(secret: &str, id: &Identity, put: &Items, back: &Read) -> anyhow::Result<()> {
    let held = match &back.remote {
        Remote::Holds { body, .. } => parse(secret, id, body)?.unwrap_or_default(),
        Remote::Absent | Remote::Empty { .. } => Items::default(),
    };
    if held != *put {
        anyhow::bail!(
            "the escrow {secret} read back after the write does not hold what was written (names written {:?}, read              {:?}): nothing is installed from it; run reconcile again, and check who else writes this secret",
            put.names(),
            held.names()
        );
    }
    Ok(())
}

fn clone_pair((k, v): (&String, &Vec<u8>)) -> (String, Vec<u8>) {
    (k.clone(), v.clone())
}

/// The escrow as hostd last saw it, kept in its state: a version and a digest, never a value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub secret: String,
    pub version: String,
    /// [`Items::digest`] of what the escrow and the host both held.
    pub digest: String,
    pub names: Vec<String>,
    pub verified_unix: i64,
    /// Set while the escrow could not be reached: the error, since when, the next try.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<PendingEscrow>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingEscrow {
    pub error: String,
    pub since_unix: i64,
    pub attempts: u32,
    pub next_try_unix: i64,
}

/// Whether this run must ask AWS: something is minted, the host's values are not the ones
/// verified, the escrow is pending and its retry time came (or an operator ran this run: the
/// backoff paces the daemon, not a person), or the last verification is a day old.
pub(crate) fn needs_call(record: Option<&Record>, local: &Items, minting: bool, operator: bool, now: i64) -> bool {
    let Some(r) = record else { return true };
    if minting || r.digest != local.digest() {
        return true;
    }
    match &r.pending {
        Some(p) => operator || now >= p.next_try_unix,
        None => now - r.verified_unix >= REVERIFY_SECS,
    }
}

/// The record after a failed call on a host that keeps running on its own values.
pub(crate) fn pending_after(previous: Option<&Record>, secret: &str, error: &str, now: i64) -> Record {
    let prior = previous.and_then(|r| r.pending.clone());
    let attempts = prior.as_ref().map_or(1, |p| p.attempts.saturating_add(1));
    let wait = RETRY_FIRST_SECS.saturating_mul(1 << attempts.saturating_sub(1).min(10)).min(RETRY_MAX_SECS);
    let mut r = previous.cloned().unwrap_or_else(|| Record { secret: secret.to_owned(), ..Record::default() });
    r.pending = Some(PendingEscrow {
        error: error.to_owned(),
        since_unix: prior.map_or(now, |p| p.since_unix),
        attempts,
        next_try_unix: now + wait,
    });
    r
}

/// What `doctor` and `escrow status` find when they compare the host with the escrow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Found {
    /// The escrow holds exactly the host's values (and perhaps others the host does not run).
    InSync {
        version: String,
    },
    /// The escrow lacks some of the host's values: the next reconcile uploads them.
    Lacks {
        names: Vec<String>,
    },
    Refused(EscrowRefusal),
}

/// Compare the host's values with the escrow as read (no minting, nothing restored).
pub(crate) fn check(secret: &str, id: &Identity, local: &Items, read: &Read) -> Found {
    let wanted: BTreeSet<String> = local.0.keys().cloned().collect();
    match decide(secret, id, local, &Items::default(), &wanted, read) {
        Err(r) => Found::Refused(r),
        Ok(d) => match d.put {
            Some(_) => {
                let names = match &read.remote {
                    Remote::Holds { body, .. } => {
                        let held = parse(secret, id, body).ok().flatten().unwrap_or_default();
                        local.0.keys().filter(|k| !held.0.contains_key(*k)).cloned().collect()
                    }
                    _ => local.names(),
                };
                Found::Lacks { names }
            }
            None => Found::InSync { version: d.version.unwrap_or_default() },
        },
    }
}

/// The escrow's state in a run's summary: `off`, `pending`, `in_sync`, or `unknown` (never checked).
pub(crate) fn summary_state(enabled: bool, record: Option<&Record>) -> String {
    match (enabled, record) {
        (false, _) => "off",
        (true, None) => "unknown",
        (true, Some(r)) if r.pending.is_some() => "pending",
        (true, Some(_)) => "in_sync",
    }
    .into()
}

/// The one-line state of the escrow for status and the run summary.
pub(crate) fn describe(record: Option<&Record>, local: &Items, now: i64) -> String {
    match record {
        None => "not yet escrowed".into(),
        Some(r) if r.pending.is_some() => {
            let p = r.pending.as_ref().map(|p| p.error.as_str()).unwrap_or_default();
            format!("PENDING: {} could not be reached ({p}); retried by the daemon", r.secret)
        }
        Some(r) if r.digest != local.digest() => {
            format!(
                "the host's values changed since {} version {} was verified; the next run checks",
                r.secret, r.version
            )
        }
        Some(r) => format!(
            "in sync: {} version {} ({} values), verified {} s ago",
            r.secret,
            r.version,
            r.names.len(),
            now - r.verified_unix
        ),
    }
}

/// The broker keypairs hostd escrows: (purpose, path).
pub(crate) const KEYPAIRS: [(&str, &str); 2] =
    [("oidc", crate::decide::paths::OIDC_KEYPAIR), ("session", crate::decide::paths::SESSION_KEYPAIR)];

/// The values this run mints: the fresh master secret and KEKs `secrets` drew.
pub(crate) fn minted_items(secrets: &Secrets) -> Items {
    let mut items = Items::default();
    if let Some(v) = &secrets.new_master {
        items.0.insert(MASTER_SECRET_KEY.to_owned(), v.clone().into_bytes());
    }
    for key in &secrets.generated {
        if let Some(v) = secrets.keks.get(key) {
            items.0.insert(key.clone(), v.clone().into_bytes());
        }
    }
    items
}

/// Put escrowed values into `secrets`, to be written by the files step: the master secret and
/// KEKs in place of any fresh draw, keypairs as files; `restored` marks them for the report.
pub(crate) fn install_into(secrets: &mut Secrets, items: &Items, restored: bool) -> anyhow::Result<()> {
    let text = |k: &str, v: &[u8]| {
        String::from_utf8(v.to_vec()).map_err(|_| anyhow::anyhow!("escrowed value {k} is not text"))
    };
    let keypair_paths: BTreeMap<String, &str> = KEYPAIRS.iter().map(|(_, p)| (keypair_item(p), *p)).collect();
    for (name, value) in &items.0 {
        if restored {
            secrets.restored.push(name.clone());
        }
        if name == MASTER_SECRET_KEY {
            secrets.master_file = None;
            secrets.new_master = Some(text(name, value)?);
        } else if let Some(path) = keypair_paths.get(name) {
            secrets.keypairs.insert((*path).to_owned(), text(name, value)?);
        } else {
            secrets.keks.insert(name.clone(), text(name, value)?);
            secrets.generated.retain(|g| g != name);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::naming::identity_from_issuer;

    fn id() -> Identity {
        identity_from_issuer("https://broker-test-7.example.org").expect("issuer")
    }

    fn items(pairs: &[(&str, &str)]) -> Items {
        Items(pairs.iter().map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec())).collect())
    }

    fn holds(i: &Items) -> Read {
        Read {
            remote: Remote::Holds { version: "v1".into(), body: encode(&id(), i) },
            tag_stack: Some(id().cloud_stack()),
        }
    }

    const S: &str = "agentkeys/escrow-test-7";

    /// The names this test host runs with (a switched-off worker's KEK2 is not among them).
    #[allow(non_snake_case)]
    fn W() -> BTreeSet<String> {
        ["MASTER", "KEK"].into_iter().map(str::to_owned).collect()
    }

    #[test]
    fn each_case_of_the_run() {
        let host = items(&[("MASTER", "m"), ("KEK", "k")]);
        let fresh = items(&[("MASTER", "m2"), ("KEK", "k2")]);
        let absent = Read { remote: Remote::Absent, tag_stack: None };
        // Virgin host, escrow holds values: restore them, mint nothing, put nothing.
        let d = decide(S, &id(), &Items::default(), &fresh, &W(), &holds(&host)).expect("restore");
        assert_eq!((d.restore.clone(), d.put.clone()), (host.clone(), None));
        // Virgin host, escrow absent: put the minted values (create the secret).
        let d = decide(S, &id(), &Items::default(), &fresh, &W(), &absent).expect("mint");
        assert_eq!((d.put.clone(), d.create, d.restore.0.is_empty()), (Some(fresh.clone()), true, true));
        // The CloudFormation marker (exists, no items) is empty too, and not created again.
        let marker = Read {
            remote: Remote::Holds { version: "v0".into(), body: encode(&id(), &Items::default()) },
            tag_stack: Some(id().cloud_stack()),
        };
        let d = decide(S, &id(), &host, &Items::default(), &W(), &marker).expect("upload");
        assert_eq!((d.put.clone(), d.create), (Some(host.clone()), false));
        // Existing host, escrow empty: upload what the host has, never the minted values.
        let d = decide(S, &id(), &host, &fresh, &W(), &absent).expect("upload");
        assert_eq!(d.put, Some(host.clone()));
        // Equal: nothing to do.
        let d = decide(S, &id(), &host, &Items::default(), &W(), &holds(&host)).expect("equal");
        assert_eq!((d.put, d.restore.0.is_empty()), (None, true));
        // A new value on a host whose escrow lacks it: added, the escrowed ones kept.
        let more = items(&[("MASTER", "m"), ("KEK", "k"), ("KEK2", "n")]);
        let d = decide(S, &id(), &host, &items(&[("KEK2", "n")]), &W(), &holds(&host)).expect("add");
        assert_eq!(d.put, Some(more.clone()));
        // An escrowed value this host does not run (a switched-off worker) is kept, not restored.
        let d = decide(S, &id(), &host, &Items::default(), &W(), &holds(&more)).expect("keep");
        assert_eq!((d.put, d.restore.0.is_empty()), (None, true));
    }

    #[test]
    fn conflicts_and_other_stacks_are_refused_without_values() {
        let host = items(&[("MASTER", "secret-a"), ("KEK", "k")]);
        let escrow = items(&[("MASTER", "secret-b"), ("KEK", "k")]);
        let err = decide(S, &id(), &host, &Items::default(), &W(), &holds(&escrow)).expect_err("conflict");
        assert!(matches!(&err, EscrowRefusal::Conflict { names, .. } if names == &["MASTER"]), "{err}");
        let shown = err.to_string();
        assert!(shown.contains("MASTER") && !shown.contains("secret-a") && !shown.contains("secret-b"), "{shown}");
        let other = identity_from_issuer("https://broker-test-8.example.org").expect("issuer");
        let foreign =
            Read { remote: Remote::Holds { version: "v".into(), body: encode(&other, &escrow) }, tag_stack: None };
        let err = decide(S, &id(), &host, &Items::default(), &W(), &foreign).expect_err("payload of another stack");
        assert!(matches!(err, EscrowRefusal::Foreign { .. }), "{err}");
        let tagged = Read { tag_stack: Some(other.cloud_stack()), ..holds(&host) };
        assert!(matches!(
            decide(S, &id(), &host, &Items::default(), &W(), &tagged),
            Err(EscrowRefusal::Foreign { .. })
        ));
        let junk = Read { remote: Remote::Holds { version: "v".into(), body: "hunter2".into() }, tag_stack: None };
        let err = decide(S, &id(), &host, &Items::default(), &W(), &junk).expect_err("junk");
        assert!(matches!(&err, EscrowRefusal::Unreadable { .. }) && !err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn a_noop_run_asks_nothing_and_a_day_old_or_pending_record_asks_again() {
        let host = items(&[("MASTER", "m")]);
        let r = Record { digest: host.digest(), verified_unix: 1000, ..Record::default() };
        assert!(!needs_call(Some(&r), &host, false, true, 1000 + REVERIFY_SECS - 1));
        assert!(needs_call(Some(&r), &host, false, false, 1000 + REVERIFY_SECS), "daily re-verification");
        assert!(needs_call(Some(&r), &host, true, false, 1001), "a mint is always escrowed first");
        assert!(needs_call(Some(&r), &items(&[("MASTER", "x")]), false, false, 1001), "changed values");
        assert!(needs_call(None, &host, false, false, 0));
        let p1 = pending_after(Some(&r), S, "timeout", 2000);
        let next = p1.pending.as_ref().expect("pending").next_try_unix;
        assert_eq!(next, 2000 + RETRY_FIRST_SECS);
        assert!(
            !needs_call(Some(&p1), &host, false, false, next - 1) && needs_call(Some(&p1), &host, false, false, next)
        );
        assert!(needs_call(Some(&p1), &host, false, true, next - 1), "an operator's run retries at once");
        let p2 = pending_after(Some(&p1), S, "timeout", next);
        let pending = p2.pending.expect("pending");
        assert_eq!(
            (pending.attempts, pending.since_unix, pending.next_try_unix),
            (2, 2000, next + 2 * RETRY_FIRST_SECS)
        );
        let mut p = p1.clone();
        for _ in 0..20 {
            p = pending_after(Some(&p), S, "timeout", 0);
        }
        assert_eq!(p.pending.expect("pending").next_try_unix, RETRY_MAX_SECS, "the backoff is capped");
    }

    #[test]
    fn doctor_compares_without_minting() {
        let host = items(&[("MASTER", "m"), ("KEK", "k")]);
        assert_eq!(check(S, &id(), &host, &holds(&host)), Found::InSync { version: "v1".into() });
        let lacks = check(S, &id(), &host, &holds(&items(&[("MASTER", "m")])));
        assert_eq!(lacks, Found::Lacks { names: vec!["KEK".into()] });
        let absent = Read { remote: Remote::Absent, tag_stack: None };
        assert_eq!(check(S, &id(), &host, &absent), Found::Lacks { names: vec!["KEK".into(), "MASTER".into()] });
        let other = check(S, &id(), &host, &holds(&items(&[("MASTER", "x")])));
        assert!(matches!(other, Found::Refused(EscrowRefusal::Conflict { .. })), "{other:?}");
    }

    #[test]
    fn the_digest_covers_names_and_values() {
        assert_ne!(items(&[("A", "bc")]).digest(), items(&[("AB", "c")]).digest());
        assert_ne!(items(&[("A", "b")]).digest(), items(&[("A", "c")]).digest());
        assert_eq!(keypair_item("/var/lib/agentkeys/.agentkeys/broker/oidc-keypair.json"), "broker/oidc-keypair.json");
    }
}
