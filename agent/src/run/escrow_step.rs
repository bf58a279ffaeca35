//! The escrow step of a run, before any file is written or service started: the host's
//! irreplaceable secrets are made to agree with the stack's escrow — restored from it, minted and
//! escrowed (written, read back, compared) before they are installed, uploaded from an existing
//! host, or refused. A run whose host still holds what was last verified asks AWS nothing.

use std::collections::BTreeSet;

use crate::decide::catalog;
use crate::decide::escrow::{self, Decision, Items, Read, Record};
use crate::decide::escrow::{KEYPAIRS, install_into, minted_items};
use crate::decide::secrets::MASTER_SECRET_KEY;
use crate::host::escrow::{self as effects, Escrow};
use crate::host::failpoints;
use crate::host::systemd::Manager;
use crate::run::prepare::{self, Prepared};

use super::steps::Ctx;

/// What the step did, for the run's state and summary.
#[derive(Debug, Default)]
pub(super) struct Escrowed {
    /// The record to keep in the state (unchanged when `None`).
    pub record: Option<Record>,
    pub notes: Vec<String>,
}

impl<M: Manager> Ctx<'_, '_, M> {
    /// Reconcile the host's secrets with the escrow; returns the (re-planned) run and what to record.
    /// `operator`: a person ran this run (a pending escrow is retried now, not after its backoff).
    pub fn escrow(&self, p: Prepared, operator: bool) -> anyhow::Result<(Prepared, Escrowed)> {
        if !p.settings.escrow {
            return Ok((p, Escrowed::default()));
        }
        let root = self.host.root;
        let now = self.host.clock.now_unix();
        let local = effects::items_on_disk(root)?;
        let minted = minted_items(&p.facts.secrets);
        // The broker mints its keypairs only where hostd drives systemd (as without escrow).
        let missing: Vec<(&str, &str)> = if self.manager.is_some() {
            KEYPAIRS.iter().copied().filter(|(_, path)| !local.0.contains_key(&escrow::keypair_item(path))).collect()
        } else {
            Vec::new()
        };
        let minting = !minted.0.is_empty() || !missing.is_empty();
        if !escrow::needs_call(self.saved.escrow.as_ref(), &local, minting, operator, now) {
            return Ok((p, Escrowed::default()));
        }
        let id = &p.settings.identity;
        let remote = self.host.rt.block_on(Escrow::connect(id, &p.settings.region));
        let read = match self.host.rt.block_on(remote.read()) {
            Ok(read) => read,
            Err(e) if minting => {
                let names: Vec<String> =
                    minted.names().into_iter().chain(missing.iter().map(|(_, p)| escrow::keypair_item(p))).collect();
                return Err(e.context(format!(
                    "refusing to mint {names:?}: no wallet or key is made that is not escrowed first; nothing was \
                     written. Fix the access to {} and run reconcile again (or switch escrow off with `[escrow] \
                     enabled = false`, knowing a lost host then loses them)",
                    remote.secret
                )));
            }
            Err(e) => return Ok((p, self.pending(&remote.secret, "reached", &e, now))),
        };
        let wanted = wanted(&p, &local, &minted, &missing);
        let first = escrow::decide(&remote.secret, id, &local, &minted, &wanted, &read)?;
        // Keypairs the escrow does not hold are minted now, into staging, and escrowed with the rest.
        let to_mint: Vec<(&str, &str)> = missing
            .into_iter()
            .filter(|(_, path)| !first.restore.0.contains_key(&escrow::keypair_item(path)))
            .collect();
        let new_keys = effects::mint_keypairs(root, &p.settings.bin_dir, &to_mint)?;
        let mut minted_all = minted;
        minted_all.0.extend(new_keys.0.clone());
        let decision = escrow::decide(&remote.secret, id, &local, &minted_all, &wanted, &read)?;
        failpoints::hit("escrow-minted");
        let version = match self.write(&remote, id, &decision) {
            Ok(version) => version,
            // Minted values are never installed unescrowed: the run stops with nothing written.
            Err(e) if !minted_all.0.is_empty() => {
                return Err(e.context(format!(
                    "refusing to install the freshly minted {:?}: they are not escrowed; nothing was written \
                     (the next run mints anew). Fix the access to {} and run reconcile again",
                    minted_all.names(),
                    remote.secret
                )));
            }
            // The host keeps its own values (and any restored ones): the upload waits.
            Err(e) => {
                let escrowed = self.pending(&remote.secret, "written", &e, now);
                let mut secrets = p.facts.secrets.clone();
                install_into(&mut secrets, &decision.restore, true)?;
                let p = if decision.restore.0.is_empty() {
                    p
                } else {
                    prepare::with_secrets(root, self.host.accounts, self.req, p, secrets)?
                };
                return Ok((p, escrowed));
            }
        };
        let mut secrets = p.facts.secrets.clone();
        install_into(&mut secrets, &new_keys, false)?;
        install_into(&mut secrets, &decision.restore, true)?;
        let after = held_after(&local, &minted_all, &decision);
        let record = Record {
            secret: remote.secret.clone(),
            version,
            digest: after.digest(),
            names: after.names(),
            verified_unix: now,
            pending: None,
        };
        let mut notes = Vec::new();
        if !decision.restore.0.is_empty() {
            notes.push(format!("restored {:?} from the escrow {}", decision.restore.names(), remote.secret));
        }
        if decision.put.is_some() {
            notes.push(format!("escrowed {:?} in {} (version {})", after.names(), remote.secret, record.version));
        }
        let p = if decision.restore.0.is_empty() && new_keys.0.is_empty() {
            p
        } else {
            prepare::with_secrets(root, self.host.accounts, self.req, p, secrets)?
        };
        Ok((p, Escrowed { record: Some(record), notes }))
    }

    /// The host keeps its own values and the escrow waits: the pending record and its note.
    fn pending(&self, secret: &str, not: &str, e: &anyhow::Error, now: i64) -> Escrowed {
        let error = format!("{e:#}");
        tracing::warn!(%secret, %error, "escrow could not be {not}; the host keeps its own values");
        let record = escrow::pending_after(self.saved.escrow.as_ref(), secret, &error, now);
        let note = format!("escrow pending: {secret} could not be {not}; the daemon retries");
        Escrowed { record: Some(record), notes: vec![note] }
    }

    /// Put the decided set, read it back and compare; the version the escrow holds afterwards.
    fn write(&self, remote: &Escrow, id: &crate::decide::naming::Identity, d: &Decision) -> anyhow::Result<String> {
        let Some(all) = &d.put else {
            return Ok(d.version.clone().unwrap_or_default());
        };
        let rt = self.host.rt;
        let version = rt.block_on(remote.write(escrow::encode(id, all), d.create))?;
        failpoints::hit("escrow-written");
        let back: Read = rt.block_on(remote.read())?;
        escrow::verify_readback(&remote.secret, id, all, &back)?;
        tracing::info!(secret = %remote.secret, version = %version, names = ?all.names(), "escrow written and read back equal");
        Ok(version)
    }
}

/// The names this host runs with: the master secret, the enabled services' KEKs, the keypairs
/// (where the broker's are minted here), and whatever it holds or mints.
fn wanted(p: &Prepared, local: &Items, minted: &Items, missing: &[(&str, &str)]) -> BTreeSet<String> {
    let mut out: BTreeSet<String> = local.0.keys().chain(minted.0.keys()).cloned().collect();
    out.insert(MASTER_SECRET_KEY.to_owned());
    out.extend(catalog::keks().filter(|k| p.settings.is_enabled(k.unit)).map(|k| k.key.to_owned()));
    out.extend(missing.iter().map(|(_, path)| escrow::keypair_item(path)));
    out
}

/// What the host holds once the files step wrote the restored and minted values.
fn held_after(local: &Items, minted: &Items, d: &Decision) -> Items {
    let mut after = local.clone();
    after.0.extend(d.restore.0.clone());
    for (k, v) in &minted.0 {
        after.0.entry(k.clone()).or_insert_with(|| v.clone());
    }
    after
}
