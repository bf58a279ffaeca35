//! Release downloads over HTTPS. Not available yet: a URL is refused with what to do instead,
//! before anything is changed.

use crate::error::{InvalidInput, Source};
use crate::host::releases::Loaded;

pub fn release(url: &str, sha256: &str) -> anyhow::Result<Loaded> {
    Err(InvalidInput::new(
        Source::Flag(format!("--release {url}")),
        format!("downloading releases is not available in this build; fetch the archive, check it with sha256sum, and pass its path with --sha256 {sha256}"),
    )
    .into())
}
