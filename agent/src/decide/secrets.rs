//! One-shot secrets (spec §4): the dev-key-service master secret and the worker KEKs. An existing
//! value is kept byte-for-byte; a malformed one stops the run before anything changes.

use std::collections::BTreeMap;

use crate::decide::error::{InvalidInput, Source};

pub(crate) const MASTER_SECRET_KEY: &str = "DEV_KEY_SERVICE_MASTER_SECRET";

/// What the host holds today: file path → contents, for the files that carry secrets.
#[derive(Debug, Clone, Default)]
pub(crate) struct Existing {
    pub files: BTreeMap<String, String>,
}

/// The secrets to render with.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secrets {
    /// The dev-key-service env file's exact bytes when it already exists.
    pub master_file: Option<String>,
    /// A freshly generated master secret when it did not.
    pub new_master: Option<String>,
    /// KEK env key → 64 lowercase hex.
    pub keks: BTreeMap<String, String>,
    /// KEK env keys generated in this run (for the report; never the values).
    pub generated: Vec<String>,
    /// Broker keypair files to install (path → content): restored from the escrow, or minted and
    /// escrowed in this run. Empty when the broker mints them itself (escrow off).
    pub keypairs: BTreeMap<String, String>,
    /// Names restored from the escrow in this run (for the report; never the values).
    pub restored: Vec<String>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field("master_file", &self.master_file.as_ref().map(|_| "<kept>"))
            .field("new_master", &self.new_master.as_ref().map(|_| "<generated>"))
            .field("keks", &self.keks.keys().collect::<Vec<_>>())
            .field("generated", &self.generated)
            .field("keypairs", &self.keypairs.keys().collect::<Vec<_>>())
            .field("restored", &self.restored)
            .finish()
    }
}

fn is_secret_hex(v: &str) -> bool {
    v.len() == 64 && v.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

pub fn hex(bytes: &[u8; 32]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Values of `key` in an EnvironmentFile-style text (`KEY=VALUE`, optional quotes).
fn assignments<'a>(text: &'a str, key: &str) -> Vec<(usize, &'a str)> {
    text.lines()
        .enumerate()
        .filter_map(|(i, l)| {
            let l = l.trim();
            let v = l.strip_prefix(key)?.strip_prefix('=')?;
            let v = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(v);
            Some((i + 1, v))
        })
        .collect()
}

fn malformed(file: &str, line: usize, key: &str, why: &str) -> InvalidInput {
    InvalidInput::new(
        Source::Host { file: file.to_owned(), detail: format!("line {line}: {key}") },
        format!(
            "{why}; it must be 64 lowercase hex characters. hostd never regenerates an existing secret \
             (that would invalidate everything derived from it): restore the file from backup or fix it by hand"
        ),
    )
}

pub(crate) use crate::decide::contracts::is_placeholder;

/// The one well-formed value of `key` in an env file's text, if any.
pub(crate) fn value_in(text: &str, key: &str) -> Option<String> {
    existing_value("", text, key).ok().flatten()
}

/// The one value of `key` in `file`, or `None` when absent; an error when malformed or repeated.
fn existing_value(file: &str, text: &str, key: &str) -> Result<Option<String>, InvalidInput> {
    match assignments(text, key).as_slice() {
        [] => Ok(None),
        [(line, v)] if is_secret_hex(v) => {
            let _ = line;
            Ok(Some((*v).to_owned()))
        }
        [(line, _)] => Err(malformed(file, *line, key, "the existing value is malformed")),
        [_, (line, _), ..] => Err(malformed(file, *line, key, "the key is assigned more than once")),
    }
}

fn placeholder(file: &str, key: &str) -> InvalidInput {
    InvalidInput::new(
        Source::Host { file: file.to_owned(), detail: key.to_owned() },
        "the existing key is one byte repeated 32 times, which the worker refuses at start as a placeholder \
         (it would restart in a loop). hostd never replaces a key that data may be encrypted with: re-encrypt \
         that data under a new random key (e.g. `openssl rand -hex 32`) and write it here by hand",
    )
}

/// Keep what exists, generate what is missing with `fresh` (the OS CSPRNG in production); a legacy
/// KEK (`generate: false`) is kept when present and never minted.
pub(crate) fn resolve(
    existing: &Existing,
    master_path: &str,
    keks: &[crate::decide::catalog::KekSpec],
    fresh: &mut dyn FnMut() -> anyhow::Result<[u8; 32]>,
) -> anyhow::Result<Secrets> {
    let mut out = Secrets::default();
    match existing.files.get(master_path) {
        Some(text) => {
            if existing_value(master_path, text, MASTER_SECRET_KEY)?.is_none() {
                return Err(malformed(master_path, 1, MASTER_SECRET_KEY, "the file exists but has no value").into());
            }
            out.master_file = Some(text.clone());
        }
        None => out.new_master = Some(hex(&fresh()?)),
    }
    for spec in keks {
        let (key, file) = (spec.key, spec.file);
        let current = match existing.files.get(file) {
            Some(text) => existing_value(file, text, key)?,
            None => None,
        };
        let value = match current {
            Some(v) if is_placeholder(&v) => return Err(placeholder(file, key).into()),
            Some(v) => v,
            None if !spec.generate => continue,
            None => loop {
                let v = hex(&fresh()?);
                if !is_placeholder(&v) {
                    out.generated.push(key.to_owned());
                    break v;
                }
            },
        };
        out.keks.insert(key.to_owned(), value);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::decide::catalog::KekSpec;

    const M: &str = "/etc/agentkeys/dev-key-service.env";
    const KEKS: [KekSpec; 2] = [
        KekSpec {
            key: "AGENTKEYS_WORKER_KEK_HEX",
            file: "/etc/agentkeys/worker-creds.env",
            generate: true,
            unit: "agentkeys-worker-creds",
        },
        KekSpec {
            key: "AGENTKEYS_CONFIG_KEK_HEX",
            file: "/etc/agentkeys/worker-config.env",
            generate: false,
            unit: "agentkeys-worker-config",
        },
    ];

    /// 32 bytes n, n+1, …: never a placeholder.
    fn counter() -> impl FnMut() -> anyhow::Result<[u8; 32]> {
        let mut n = 0u8;
        move || {
            n += 1;
            Ok(std::array::from_fn(|i| n.wrapping_add(i as u8)))
        }
    }

    fn seq_hex(n: u8) -> String {
        hex(&std::array::from_fn(|i| n.wrapping_add(i as u8)))
    }

    #[test]
    fn generates_only_what_is_missing_and_keeps_existing_bytes() {
        let s = resolve(&Existing::default(), M, &KEKS, &mut counter()).expect("fresh");
        assert_eq!(s.new_master.as_deref(), Some(seq_hex(1).as_str()));
        assert_eq!(s.keks["AGENTKEYS_WORKER_KEK_HEX"], seq_hex(2));
        assert!(!s.keks.contains_key("AGENTKEYS_CONFIG_KEK_HEX"), "a legacy KEK is never minted");
        assert_eq!(s.generated, ["AGENTKEYS_WORKER_KEK_HEX"]);
        let kept = format!("# old script\n{MASTER_SECRET_KEY}={}\n", "ab".repeat(32));
        let mut existing = Existing::default();
        existing.files.insert(M.into(), kept.clone());
        existing
            .files
            .insert(KEKS[0].file.into(), format!("WORKER_BIND=x\nAGENTKEYS_WORKER_KEK_HEX={}\n", seq_hex(0xc0)));
        existing.files.insert(KEKS[1].file.into(), format!("AGENTKEYS_CONFIG_KEK_HEX={}\n", seq_hex(0x30)));
        let s = resolve(&existing, M, &KEKS, &mut || anyhow::bail!("must not generate")).expect("kept");
        assert_eq!(s.master_file.as_deref(), Some(kept.as_str()));
        assert_eq!(s.keks["AGENTKEYS_WORKER_KEK_HEX"], seq_hex(0xc0));
        assert_eq!(s.keks["AGENTKEYS_CONFIG_KEK_HEX"], seq_hex(0x30), "an existing legacy KEK is kept");
        assert!(s.generated.is_empty());
    }

    #[test]
    fn a_placeholder_kek_stops_the_run_and_is_never_minted() {
        assert!(is_placeholder(&"00".repeat(32)) && is_placeholder(&"cd".repeat(32)));
        assert!(!is_placeholder(&seq_hex(7)) && !is_placeholder(&"0101".repeat(15)));
        for spec in KEKS {
            let mut existing = Existing::default();
            existing.files.insert(spec.file.into(), format!("{}={}\n", spec.key, "cd".repeat(32)));
            let err = resolve(&existing, M, &KEKS, &mut counter()).expect_err(spec.key).to_string();
            assert!(err.contains(spec.file) && err.contains(spec.key) && err.contains("placeholder"), "{err}");
            assert!(!err.contains(&"cd".repeat(32)), "the secret is not echoed: {err}");
        }
        let mut repeats =
            [[7u8; 32], [7u8; 32]].into_iter().chain(std::iter::repeat_with(|| std::array::from_fn(|i| i as u8)));
        let s = resolve(&Existing::default(), M, &KEKS, &mut || Ok(repeats.next().unwrap_or_default())).expect("fresh");
        assert!(!is_placeholder(&s.keks["AGENTKEYS_WORKER_KEK_HEX"]), "a placeholder draw is drawn again");
    }

    #[test]
    fn malformed_existing_values_stop_the_run() {
        for text in [
            format!("{MASTER_SECRET_KEY}={}\n", "AB".repeat(32)),
            format!("{MASTER_SECRET_KEY}={}\n", "ab".repeat(31)),
            format!("{MASTER_SECRET_KEY}=a\n{MASTER_SECRET_KEY}=b\n"),
            String::new(),
        ] {
            let mut existing = Existing::default();
            existing.files.insert(M.into(), text.clone());
            let err = resolve(&existing, M, &KEKS, &mut counter()).expect_err(&text).to_string();
            assert!(err.contains(M) && err.contains("never regenerates"), "{err}");
            assert!(!err.contains(&"ab".repeat(31)), "the secret is not echoed: {err}");
        }
    }
}
