//! Reads the operator-authored input files of the optional services (content, mode, owner) and
//! whether each seeded input's live copy exists; the judging is `decide::inputs`.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;

use anyhow::Context;

use crate::decide::catalog::{Delivery, Service};
use crate::decide::error::{InvalidInput, Source};
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
            Ok(meta) if !meta.is_file() => {
                let source =
                    Source::Host { file: path.clone(), detail: format!("input {} of {}", input.name, svc.unit) };
                return Err(
                    InvalidInput::new(source, "is not a regular file; put the input in a file of that name").into()
                );
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::catalog::{GATE, service};

    #[test]
    fn reads_each_input_with_its_mode_and_refuses_a_directory_in_its_place() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let root = Root::new(dir.path());
        let gate = service(GATE).expect("gate");
        let files = crate::decide::inputs::files(&crate::decide::config::Config::default()).expect("defaults");
        let files = &files[GATE];
        let key = root.path(&files["upstream_api_key"]);
        std::fs::create_dir_all(key.parent().expect("parent")).expect("mkdir");
        std::fs::write(&key, "k\n").expect("write");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        let o = observe(&root, gate, files).expect("observed");
        let fact = o.files[&files["upstream_api_key"]].as_ref().expect("present");
        assert_eq!((fact.content.as_slice(), fact.mode), (&b"k\n"[..], 0o640));
        assert_eq!(o.files[&files["keys"]], None, "absent");
        assert_eq!(o.live.get("/var/lib/agentkeys/gate/keys.json"), Some(&false));
        std::fs::remove_file(&key).expect("rm");
        std::fs::create_dir(&key).expect("a directory in its place");
        let e = observe(&root, gate, files).expect_err("refused");
        let invalid = e.downcast_ref::<InvalidInput>().expect("invalid input: exit 2");
        assert!(invalid.to_string().contains("/etc/agentkeys/gate/upstream-api-key"), "{invalid}");
    }
}
