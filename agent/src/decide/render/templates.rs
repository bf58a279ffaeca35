//! The tera engine with the templates compiled into the binary from `units/` and `templates/`.

use anyhow::Context as _;

use crate::decide::error::{InvalidInput, Source};

pub const UNIT: &str = "agentkeys-service.service";
pub(crate) const ENV_FILE: &str = "env-file.env";
pub(crate) const VHOST: &str = "nginx-vhost.conf";
pub(crate) const PROXY_PARAMS: &str = "proxy-params.conf";

const SOURCES: [(&str, &str); 4] = [
    (UNIT, include_str!("../../../../units/agentkeys-service.service.tera")),
    (ENV_FILE, include_str!("../../../../templates/env-file.env.tera")),
    (VHOST, include_str!("../../../../templates/nginx-vhost.conf.tera")),
    (PROXY_PARAMS, include_str!("../../../../templates/proxy-params.conf.tera")),
];

#[derive(Debug)]
pub struct Engine {
    tera: tera::Tera,
}

impl Engine {
    /// The built-in templates, each replaced by an operator override when one is given
    /// (`/etc/agentkeys/templates/<name>.tera`, as `(name, file, text)`).
    pub fn new(overrides: &[(String, String, String)]) -> anyhow::Result<Self> {
        let mut tera = tera::Tera::default();
        tera.autoescape_on(Vec::<&str>::new());
        for (name, text) in SOURCES {
            match overrides.iter().find(|(n, _, _)| n == name) {
                Some((_, file, text)) => tera.add_raw_template(name, text).map_err(|e| {
                    InvalidInput::new(Source::Host { file: file.clone(), detail: "template".into() }, format!("{e}"))
                })?,
                None => {
                    tera.add_raw_template(name, text).with_context(|| format!("failed to compile template {name}"))?
                }
            }
        }
        Ok(Self { tera })
    }

    /// Names an override file may have.
    pub fn names() -> impl Iterator<Item = &'static str> {
        SOURCES.iter().map(|(n, _)| *n)
    }

    pub fn render(&self, name: &str, ctx: &impl serde::Serialize) -> anyhow::Result<String> {
        let ctx = tera::Context::from_serialize(ctx).with_context(|| format!("failed to build context for {name}"))?;
        self.tera.render(name, &ctx).with_context(|| format!("failed to render template {name}"))
    }
}
