//! The certificate step's own records, one store: the failure ledger, the ARI cache and the last
//! issue per host (with how it named the certificate it replaced) under
//! `/var/lib/agentkeys-hostd/acme/`, read once per run and written once, only what changed.

use std::collections::BTreeMap;

use anyhow::Context;

use crate::decide::acme_policy::{AriEntry, Ledger};
use crate::host::acme;
use crate::host::fs::Root;

pub(crate) const LEDGER_FILE: &str = "/var/lib/agentkeys-hostd/acme/ledger.json";
pub(crate) const ARI_FILE: &str = "/var/lib/agentkeys-hostd/acme/renewal-info.json";
pub(crate) const ISSUED_FILE: &str = "/var/lib/agentkeys-hostd/acme/issued.json";

/// The last certificate issued for a host: its serial, when, and how its order named the one it
/// replaced.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Issue {
    pub serial: String,
    pub at: i64,
    /// The CA (directory URL) that issued it: its renewals go there first.
    #[serde(default)]
    pub ca: String,
    #[serde(flatten)]
    pub replaces: acme::Replaces,
}

/// Per host: the ledger of failed orders and the CA's cached renewal window.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct AcmeStore {
    pub ledger: BTreeMap<String, Ledger>,
    pub ari: BTreeMap<String, AriEntry>,
    pub issued: BTreeMap<String, Issue>,
    read: (BTreeMap<String, Ledger>, BTreeMap<String, AriEntry>, BTreeMap<String, Issue>),
}

impl AcmeStore {
    /// Read both files (absent: empty). An unreadable ledger stops the run (it guards the CA's
    /// limits); an unreadable ARI cache is only a cache and starts empty.
    pub(crate) fn load(root: &Root) -> anyhow::Result<Self> {
        let ledger: BTreeMap<String, Ledger> = match root.read_string(LEDGER_FILE)? {
            Some(t) => {
                serde_json::from_str(&t).with_context(|| format!("{LEDGER_FILE} is unreadable; move it aside"))?
            }
            None => BTreeMap::new(),
        };
        let ari: BTreeMap<String, AriEntry> = match root.read_string(ARI_FILE)? {
            Some(t) => serde_json::from_str(&t).unwrap_or_default(),
            None => BTreeMap::new(),
        };
        let issued: BTreeMap<String, Issue> = match root.read_string(ISSUED_FILE)? {
            Some(t) => serde_json::from_str(&t).unwrap_or_default(),
            None => BTreeMap::new(),
        };
        Ok(Self { read: (ledger.clone(), ari.clone(), issued.clone()), ledger, ari, issued })
    }

    /// Write what changed since `load` (0600, in the 0700 ACME directory).
    pub(crate) fn save(&mut self, root: &Root) -> anyhow::Result<()> {
        if self.ledger == self.read.0 && self.ari == self.read.1 && self.issued == self.read.2 {
            return Ok(());
        }
        std::fs::create_dir_all(root.path(acme::ACCOUNT_DIR)).context("failed to create the ACME state directory")?;
        if self.ledger != self.read.0 {
            root.set_meta(acme::ACCOUNT_DIR, 0o700, 0, 0)?;
            let text = serde_json::to_string_pretty(&self.ledger)? + "\n";
            root.write_atomic(LEDGER_FILE, text.as_bytes(), 0o600, 0, 0)?;
        }
        if self.ari != self.read.1 {
            let text = serde_json::to_string_pretty(&self.ari)? + "\n";
            root.write_atomic(ARI_FILE, text.as_bytes(), 0o600, 0, 0)?;
        }
        if self.issued != self.read.2 {
            let text = serde_json::to_string_pretty(&self.issued)? + "\n";
            root.write_atomic(ISSUED_FILE, text.as_bytes(), 0o600, 0, 0)?;
        }
        self.read = (self.ledger.clone(), self.ari.clone(), self.issued.clone());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_only_what_changed_and_reads_it_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = Root::new(dir.path());
        let mut store = AcmeStore::load(&root).expect("empty");
        store.save(&root).expect("nothing to write");
        assert!(!root.path(LEDGER_FILE).exists() && !root.path(ARI_FILE).exists(), "an unchanged store writes nothing");
        store.ledger.insert("a.example.org".into(), Ledger { failures: 1, ..Ledger::default() });
        store.save(&root).expect("save");
        assert!(root.path(LEDGER_FILE).exists() && !root.path(ARI_FILE).exists());
        let again = AcmeStore::load(&root).expect("load");
        assert_eq!(again.ledger, store.ledger);
        std::fs::write(root.path(ARI_FILE), "not json").expect("write");
        assert!(AcmeStore::load(&root).expect("a broken cache is empty").ari.is_empty());
        std::fs::write(root.path(LEDGER_FILE), "not json").expect("write");
        let e = AcmeStore::load(&root).expect_err("a broken ledger stops");
        assert!(format!("{e:#}").contains("ledger.json is unreadable"), "{e:#}");
    }
}
