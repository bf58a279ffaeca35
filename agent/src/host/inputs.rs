//! Reads the operator-authored input files of the optional services (content, mode, owner) and
//! whether each seeded input's live copy exists; the judging is `decide::inputs`.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;

use anyhow::Context;

use crate::decide::catalog::{Delivery, Service};
use crate::decide::inputs::{FileFact, Observed};
use crate::host::fs::Root;

/// What the host holds for `svc`'s inputs, named by `files` (input name → path).
pub(crate) fn observe(root: &Root, svc: &Service, files: &BTreeMap<&'static str, String>) -> anyhow::Result<Observed> {
    let mut out = Observed::default();
    for input in svc.inputs {
        let path = &files[input.name];
        let host_path = root.path(path);
        let fact = match std::fs::metadata(&host_path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e).with_context(|| format!("failed to inspect input file {path}")),
            Ok(meta) if !meta.is_file() => anyhow::bail!("input file {path} of {} is not a regular file", svc.unit),
            Ok(meta) => {
                let content = std::fs::read(&host_path).with_context(|| format!("failed to read input file {path}"))?;
                Some(FileFact { content, mode: meta.mode() & 0o7777, uid: meta.uid() })
            }
        };
        out.files.insert(path.clone(), fact);
        if let Delivery::Seed(_) = input.delivery {
            let live = crate::decide::inputs::live_path(svc, input);
            out.live.insert(live.clone(), root.path(&live).exists());
        }
    }
    Ok(out)
}
