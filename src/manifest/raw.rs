//! The manifest as serde reads it: every table and key of `relocache.toml`
//! with its span, unknown keys refused. Nothing here is checked; `validate`
//! turns these into a [`super::Manifest`].

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawManifest {
    pub(super) project: Option<RawProject>,
    pub(super) defaults: Option<RawDefaults>,
    pub(super) target: Option<BTreeMap<String, Spanned<RawTarget>>>,
    pub(super) remote: Option<Spanned<RawRemote>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRemote {
    pub(super) url: Spanned<String>,
    pub(super) mode: Option<Spanned<String>>,
    pub(super) timeout: Option<Spanned<String>>,
    pub(super) signing_key_env: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProject {
    pub(super) name: Option<Spanned<String>>,
    pub(super) salt: Option<String>,
    pub(super) depot: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDefaults {
    pub(super) env: Option<Vec<Spanned<String>>>,
    pub(super) tools: Option<Vec<Spanned<toml::Value>>>,
    pub(super) inputs: Option<Vec<Spanned<String>>>,
    pub(super) include_dependency: Option<Vec<Spanned<toml::Value>>>,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTarget {
    /// A glob or a list: the table is a template, one target per matching file.
    pub(super) foreach: Option<Spanned<toml::Value>>,
    pub(super) run: Option<Spanned<String>>,
    pub(super) command: Option<Spanned<Vec<String>>>,
    pub(super) inputs: Option<Vec<Spanned<String>>>,
    pub(super) include_dependency: Option<Vec<Spanned<toml::Value>>>,
    pub(super) outputs: Option<Vec<Spanned<String>>>,
    pub(super) deps: Option<Vec<Spanned<String>>>,
    pub(super) env: Option<Vec<Spanned<String>>>,
    pub(super) tools: Option<Vec<Spanned<toml::Value>>>,
    pub(super) version: Option<Spanned<i64>>,
    /// A Make-syntax dependency file the command writes (`-MD -MF`).
    pub(super) depfile: Option<Spanned<String>>,
    /// How this target's stored logs are replayed.
    pub(super) logs: Option<Spanned<String>>,
    /// Free text for humans; accepted and ignored.
    #[allow(dead_code)]
    pub(super) description: Option<String>,
}
