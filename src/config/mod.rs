//! Configuration: a raw serde mirror of the TOML file ([`raw`]), layered with figment
//! (built-in defaults → file → `TIERWISE_*` env), then validated into [`Config`], which
//! holds no `Option` for anything that has a default.

mod defaults;
mod load;
pub mod raw;
mod validate;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use reqwest::Url;

use crate::policy::Tier;

pub use load::{load, load_from_str, ConfigError, ConfigSource};
pub use validate::{validate, Problem};

/// The validated runtime configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub upstreams: BTreeMap<String, UpstreamConfig>,
    pub models: BTreeMap<String, ModelConfig>,
    pub tasks: BTreeMap<String, TaskConfig>,
    /// Where this config came from, for `check-config` and `/readyz`.
    pub source: ConfigSource,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub body_limit_bytes: usize,
    pub request_timeout: Duration,
    pub shutdown_grace: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamKind {
    /// Any server speaking OpenAI's `/chat/completions`.
    OpenAi,
}

#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    pub name: String,
    pub tier: Tier,
    pub kind: UpstreamKind,
    pub base_url: Url,
    /// The env var the key is read from; named in messages, never the key itself.
    pub api_key_env: Option<String>,
    /// The key read from `api_key_env` at load time; `None` when unset.
    pub api_key: Option<Secret>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub first_byte_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct ModelConfig {
    pub alias: String,
    pub upstream: String,
    /// The model name sent upstream.
    pub name: String,
}

#[derive(Debug, Clone)]
pub struct TaskConfig {
    pub name: String,
    /// Model aliases, all known to `Config::models`.
    pub chain: Vec<String>,
}

/// A credential. Its `Debug` never shows the value, so it cannot leak through logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Secret(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl Config {
    /// The upstream serving a model alias. Validation guarantees it exists.
    pub fn upstream_of(&self, model: &ModelConfig) -> Option<&UpstreamConfig> {
        self.upstreams.get(&model.upstream)
    }

    /// A one-line summary per section, for `check-config`.
    pub fn summary(&self) -> String {
        let mut out = format!("config OK ({})\n", self.source);
        out.push_str(&format!("listen: {}\n", self.server.listen));
        out.push_str(&format!("upstreams ({}):\n", self.upstreams.len()));
        for u in self.upstreams.values() {
            let key = match (&u.api_key_env, &u.api_key) {
                (Some(env), Some(_)) => format!(", key from ${env} (set)"),
                (Some(env), None) => format!(", key from ${env} (NOT SET: steps on it are skipped)"),
                (None, _) => String::new(),
            };
            out.push_str(&format!("  {} [{}] {}{}\n", u.name, u.tier, u.base_url, key));
        }
        out.push_str(&format!("models ({}):\n", self.models.len()));
        for m in self.models.values() {
            out.push_str(&format!("  {} -> {} on {}\n", m.alias, m.name, m.upstream));
        }
        out.push_str(&format!("tasks ({}):\n", self.tasks.len()));
        for t in self.tasks.values() {
            out.push_str(&format!("  {}: {}\n", t.name, t.chain.join(" -> ")));
        }
        out
    }
}
