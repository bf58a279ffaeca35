//! Errors a caller matches on, each mapped to its exit code (spec §10).

use std::fmt;

/// Exit codes of every command (spec §10).
pub mod exit {
    /// Converged, with or without changes.
    pub const OK: i32 = 0;
    /// Apply or health failure.
    pub(crate) const APPLY: i32 = 1;
    /// Invalid input or usage.
    pub(crate) const INVALID: i32 = 2;
    /// Identity conflict: a cross-wired re-deploy was refused.
    pub(crate) const CONFLICT: i32 = 3;
    /// Another converge held the lock past the wait limit (EX_TEMPFAIL).
    pub(crate) const LOCKED: i32 = 75;
}

/// Where a piece of input came from, so every message can name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A command-line flag, e.g. `--zone`.
    Flag(String),
    /// A key in a hostd configuration file.
    Config { file: String, key: String },
    /// A line of an operator env file.
    EnvFile { file: String, line: usize, key: String },
    /// A file already on the host (deployed unit, secret, env file).
    Host { file: String, detail: String },
    /// The built-in default.
    Default(String),
    /// A setting that no source provided (named as its hostd.toml key).
    Missing(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Flag(flag) => write!(f, "{flag}"),
            Source::Config { file, key } => write!(f, "{file}: key `{key}`"),
            Source::EnvFile { file, line, key } => write!(f, "{file}:{line}: {key}"),
            Source::Host { file, detail } => write!(f, "{file}: {detail}"),
            Source::Default(what) => write!(f, "built-in default {what}"),
            Source::Missing(key) => write!(f, "missing setting `{key}`"),
        }
    }
}

/// Invalid input: exit 2. Names what was wrong and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid input: {source_of}: {reason}")]
pub struct InvalidInput {
    /// The flag, file/key or file/line that carried the value.
    pub source_of: Source,
    /// Why it was refused, and what to do.
    pub reason: String,
}

impl InvalidInput {
    pub fn new(source_of: Source, reason: impl Into<String>) -> Self {
        Self { source_of, reason: reason.into() }
    }
}

/// A deployed identity contradicted by explicit input: exit 3.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "identity conflict: this host is deployed as {deployed} (issuer {deployed_issuer}, read from {record}), \
     but {requested_by} asks for {requested}; refusing to cross-wire stacks. Re-run without the \
     contradicting input to re-deploy this host as {deployed}. To re-purpose the machine deliberately, \
     remove /etc/systemd/system/agentkeys-broker.service and /etc/agentkeys, then bootstrap again"
)]
pub(crate) struct IdentityConflict {
    pub deployed: String,
    pub deployed_issuer: String,
    pub record: String,
    pub requested_by: String,
    pub requested: String,
}

/// Map any error chain to the exit code of the first typed error in it.
pub fn exit_code_of(err: &anyhow::Error) -> i32 {
    for cause in err.chain() {
        if cause.downcast_ref::<LockBusy>().is_some() {
            return exit::LOCKED;
        }
        if cause.downcast_ref::<IdentityConflict>().is_some()
            || cause.downcast_ref::<crate::decide::escrow::EscrowRefusal>().is_some()
        {
            return exit::CONFLICT;
        }
        if cause.downcast_ref::<InvalidInput>().is_some() {
            return exit::INVALID;
        }
    }
    exit::APPLY
}

/// Another run held the lock past the wait limit: exit 75.
#[derive(Debug, thiserror::Error)]
#[error(
    "another converge (pid {holder}) still holds {path} after {waited_secs} s; try again later or raise --lock-wait"
)]
pub(crate) struct LockBusy {
    pub holder: String,
    pub path: String,
    pub waited_secs: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_first_typed_error_in_the_chain() {
        let invalid = anyhow::Error::new(InvalidInput::new(Source::Flag("--zone".into()), "bad"))
            .context("failed to resolve identity");
        assert_eq!(exit_code_of(&invalid), exit::INVALID);
        let conflict = anyhow::Error::new(IdentityConflict {
            deployed: "a".into(),
            deployed_issuer: "b".into(),
            record: "c".into(),
            requested_by: "d".into(),
            requested: "e".into(),
        });
        assert_eq!(exit_code_of(&conflict), exit::CONFLICT);
        assert_eq!(exit_code_of(&anyhow::anyhow!("disk full")), exit::APPLY);
    }
}
