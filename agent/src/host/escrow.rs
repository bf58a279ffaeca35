//! The escrow's effects: the stack's Secrets Manager secret read and written through AWS's SDK
//! (credentials from the instance profile over IMDSv2, or the standard AWS environment; the
//! endpoint overridable the standard way, `AWS_ENDPOINT_URL_SECRETS_MANAGER`), the host's
//! escrowed values read from its files, and broker keypairs minted into a root-only staging
//! directory so they are escrowed before they are ever installed.

use std::time::Duration;

use anyhow::Context as _;
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::DisplayErrorContext;
use aws_sdk_secretsmanager::types::Tag;

use crate::decide::escrow::{Items, KEYPAIRS, Read, Remote, STACK_TAG, keypair_item};
use crate::decide::naming::Identity;
use crate::decide::paths;
use crate::decide::secrets::{MASTER_SECRET_KEY, value_in};
use crate::host::fs::Root;

/// Where keypairs are minted before they are escrowed (root-only, emptied before and after).
const STAGING: &str = "/var/lib/agentkeys-hostd/escrow-staging";

/// The stack's escrow secret, as the host reaches it.
#[derive(Debug)]
pub(crate) struct Escrow {
    client: Client,
    pub secret: String,
    kms_alias: String,
    stack: String,
}

impl Escrow {
    /// A client for `id`'s secret in `region` (no call is made yet).
    pub async fn connect(id: &Identity, region: &str) -> Self {
        let timeouts = aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(3))
            .operation_attempt_timeout(Duration::from_secs(10))
            .operation_timeout(Duration::from_secs(30))
            .build();
        let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(region.to_owned()))
            .timeout_config(timeouts)
            .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(3))
            .load()
            .await;
        Self {
            client: Client::new(&conf),
            secret: id.escrow_secret(),
            kms_alias: id.escrow_kms_alias(),
            stack: id.cloud_stack(),
        }
    }

    /// The secret's tag and current value.
    pub async fn read(&self) -> anyhow::Result<Read> {
        let described = match self.client.describe_secret().secret_id(&self.secret).send().await {
            Ok(d) => d,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception()) => {
                return Ok(Read { remote: Remote::Absent, tag_stack: None });
            }
            Err(e) => return Err(self.failed("describe", &DisplayErrorContext(&e).to_string())),
        };
        let tag_stack =
            described.tags().iter().find(|t| t.key() == Some(STACK_TAG)).and_then(|t| t.value()).map(str::to_owned);
        let remote = match self.client.get_secret_value().secret_id(&self.secret).send().await {
            Ok(v) => match (v.version_id(), v.secret_string()) {
                (Some(version), Some(body)) => Remote::Holds { version: version.to_owned(), body: body.to_owned() },
                (version, _) => Remote::Empty { version: version.map(str::to_owned) },
            },
            // A secret created without a value has no current version yet.
            Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception()) => {
                Remote::Empty { version: None }
            }
            Err(e) => return Err(self.failed("read", &DisplayErrorContext(&e).to_string())),
        };
        Ok(Read { remote, tag_stack })
    }

    /// Write `body` as the secret's new current version (creating the secret, encrypted with the
    /// stack's KMS key and tagged with the stack, when it does not exist); returns the version.
    pub async fn write(&self, body: String, create: bool) -> anyhow::Result<String> {
        let version = if create {
            let tag = Tag::builder().key(STACK_TAG).value(&self.stack).build();
            let out = self
                .client
                .create_secret()
                .name(&self.secret)
                .kms_key_id(&self.kms_alias)
                .description(format!("AgentKeys escrow of {}: the secrets a replacement host restores", self.stack))
                .tags(tag)
                .secret_string(body)
                .send()
                .await
                .map_err(|e| self.failed("create", &DisplayErrorContext(&e).to_string()))?;
            out.version_id().map(str::to_owned)
        } else {
            let out = self
                .client
                .put_secret_value()
                .secret_id(&self.secret)
                .secret_string(body)
                .send()
                .await
                .map_err(|e| self.failed("write", &DisplayErrorContext(&e).to_string()))?;
            out.version_id().map(str::to_owned)
        };
        version.with_context(|| format!("Secrets Manager answered without a version id for {}", self.secret))
    }

    fn failed(&self, what: &str, error: &str) -> anyhow::Error {
        anyhow::anyhow!(
            "failed to {what} the escrow secret {} ({error}); check the host role's access to it (cloud render adds \
             it), its KMS key {}, and that Secrets Manager is reachable",
            self.secret,
            self.kms_alias
        )
    }
}

/// The escrowed values on the host's disk now (outside a run: status, doctor, `escrow status`):
/// the well-formed master secret and KEKs in their env files, and the keypairs.
pub(crate) fn items_on_disk(root: &Root) -> anyhow::Result<Items> {
    let mut items = Items::default();
    let files = std::iter::once((MASTER_SECRET_KEY, paths::DEV_KEY_SERVICE_ENV))
        .chain(crate::decide::catalog::keks().map(|k| (k.key, k.file)));
    for (key, file) in files {
        if let Some(v) = root.read_string(file)?.and_then(|text| value_in(&text, key)) {
            items.0.insert(key.to_owned(), v.into_bytes());
        }
    }
    for (_, path) in KEYPAIRS {
        if let Some(bytes) = root.read(path)? {
            items.0.insert(keypair_item(path), bytes);
        }
    }
    Ok(items)
}

/// Mint the missing broker keypairs with the release's broker (`keygen`) into the root-only
/// staging directory and return their bytes; nothing is installed.
pub(crate) fn mint_keypairs(root: &Root, bin_dir: &str, missing: &[(&str, &str)]) -> anyhow::Result<Items> {
    let mut items = Items::default();
    if missing.is_empty() {
        return Ok(items);
    }
    let dir = root.path(STAGING);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("failed to create {}", dir.display()))?;
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
    let bin = root.path(&format!("{bin_dir}/agentkeys-broker-server"));
    let result = (|| {
        for (purpose, path) in missing {
            let out_file = dir.join(path.rsplit('/').next().unwrap_or(purpose));
            let out = std::process::Command::new(&bin)
                .args(["keygen", "--purpose", purpose, "--out"])
                .arg(&out_file)
                .env_clear()
                .env("HOME", &dir)
                .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
                .current_dir(&dir)
                .output()
                .with_context(|| format!("failed to run {} keygen", bin.display()))?;
            if !out.status.success() {
                anyhow::bail!(
                    "{} keygen --purpose {purpose} failed ({}): {}",
                    bin.display(),
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            let bytes = std::fs::read(&out_file).with_context(|| format!("failed to read {}", out_file.display()))?;
            items.0.insert(keypair_item(path), bytes);
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result.map(|()| items)
}
