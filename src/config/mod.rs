//! Configuration: a raw serde mirror of the TOML file ([`raw`]), layered with figment
//! (built-in defaults → file → `TIERWISE_*` env), then validated into [`Config`], which
//! holds no `Option` for anything that has a default.

mod cache;
mod defaults;
mod load;
pub mod raw;
mod raw_services;
mod services;
mod validate;
mod validate_access;
mod validate_detect;
mod validate_server;
mod validate_signals;
mod validate_state;
mod validate_tracing;
mod validate_upstream;
mod validate_verify;
mod verify;

pub use cache::CacheConfig;
pub use services::{OnStateError, OtlpProtocol, RedisConfig, StateConfig, TracingConfig};

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use reqwest::Url;

use crate::policy::{ContentClass, DetectPolicy, Detector, Locale, Tier};

pub use load::{load, load_from_str, load_with, ConfigError, ConfigSource};
pub use validate::{validate, Problem};
pub use validate_access::{hex, sha256};
pub use verify::{Confidence, ConfidenceScore, Consistency, Extract, JudgeScore, Sampling, SelfCheck, VerifyConfig};

/// The validated runtime configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub upstreams: BTreeMap<String, UpstreamConfig>,
    pub models: BTreeMap<String, ModelConfig>,
    pub tasks: BTreeMap<String, TaskConfig>,
    /// Always holds `default`, written or implied. Shared: a request's caller holds one.
    pub profiles: BTreeMap<String, Arc<Profile>>,
    pub auth: AuthConfig,
    /// The sensitive-content detector (`[detect]`), compiled.
    pub detector: Detector,
    /// `[detect] opaque` and `local_output`, for direct model requests and tasks that do
    /// not set their own.
    pub detect: DetectPolicy,
    /// `[audit]`; `None` when no path is set.
    pub audit: Option<crate::audit::AuditConfig>,
    /// `[state]`: where rate limits live.
    pub state: StateConfig,
    /// `[tracing]` with the `OTEL_*` variables; `None`: no traces.
    pub tracing: Option<TracingConfig>,
    /// Where this config came from, for `check-config` and `/readyz`.
    pub source: ConfigSource,
    /// SHA-256 of the file's bytes as loaded (file configs only): how the file watcher
    /// tells a change from the file it is running.
    pub file_digest: Option<[u8; 32]>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub body_limit_bytes: usize,
    pub request_timeout: Duration,
    pub shutdown_grace: Duration,
    pub sse_keepalive: Duration,
    /// Add the `tierwise` trail object to non-streaming bodies.
    pub trail_in_body: bool,
    /// `/metrics` on its own address instead of `listen`.
    pub metrics_listen: Option<SocketAddr>,
    /// Load shedding: concurrent requests (0: no limit), queue, and queue wait.
    pub max_concurrent_requests: usize,
    pub queue_limit: usize,
    pub queue_wait: Duration,
    pub header_read_timeout: Duration,
    pub max_header_bytes: usize,
    pub body_read_timeout: Duration,
    /// How often the config file is checked for changes; `None`: never.
    pub config_poll: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamKind {
    /// Any server speaking OpenAI's `/chat/completions`.
    OpenAi,
    /// Anthropic's Messages API (`/messages`), translated to and from OpenAI's shapes.
    Anthropic,
}

impl UpstreamKind {
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamKind::OpenAi => "openai",
            UpstreamKind::Anthropic => "anthropic",
        }
    }
}

/// How an upstream gets a Responses API request (`responses`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResponsesApi {
    /// Translated to the chat completion it amounts to.
    #[default]
    Translate,
    /// Passed through to `{base_url}/responses` when the step's answer is not verified.
    Native,
}

/// How an upstream's API key travels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyHeader {
    /// `Authorization: Bearer <key>`.
    Bearer,
    /// `<name>: <key>`, e.g. Azure's `api-key` or Anthropic's `x-api-key`.
    Plain(HeaderName),
}

impl KeyHeader {
    /// The header's name.
    pub fn name(&self) -> HeaderName {
        match self {
            KeyHeader::Bearer => http::header::AUTHORIZATION,
            KeyHeader::Plain(name) => name.clone(),
        }
    }
}

/// How tierwise learns whether an upstream's models are loaded (DESIGN §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WarmthSource {
    /// llama-swap: `GET /running` (`state == "ready"`), else `GET /v1/models` status.
    LlamaSwap,
    /// llama-server: router mode's `GET /v1/models` status; a single-model server is warm
    /// once `GET /health` answers 200.
    LlamaServer,
    /// ollama: `GET /api/ps` lists the loaded models.
    Ollama,
    /// Always warm (a cloud API).
    Always,
    /// Unknown: never probed.
    None,
}

impl WarmthSource {
    pub fn as_str(self) -> &'static str {
        match self {
            WarmthSource::LlamaSwap => "llama-swap",
            WarmthSource::LlamaServer => "llama-server",
            WarmthSource::Ollama => "ollama",
            WarmthSource::Always => "always",
            WarmthSource::None => "none",
        }
    }

    /// Whether a background prober polls the upstream.
    pub fn is_probed(self) -> bool {
        matches!(self, WarmthSource::LlamaSwap | WarmthSource::LlamaServer | WarmthSource::Ollama)
    }
}

impl std::str::FromStr for WarmthSource {
    type Err = ();

    fn from_str(text: &str) -> Result<Self, ()> {
        [
            WarmthSource::LlamaSwap,
            WarmthSource::LlamaServer,
            WarmthSource::Ollama,
            WarmthSource::Always,
            WarmthSource::None,
        ]
        .into_iter()
        .find(|source| source.as_str() == text)
        .ok_or(())
    }
}

impl fmt::Display for WarmthSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    pub name: String,
    pub tier: Tier,
    pub kind: UpstreamKind,
    pub responses: ResponsesApi,
    pub base_url: Url,
    /// The env var the key is read from; named in messages, never the key itself.
    pub api_key_env: Option<String>,
    /// The key read from `api_key_env` at load time; `None` when unset.
    pub api_key: Option<Secret>,
    /// Where the key goes (`auth_header`).
    pub key_header: KeyHeader,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Appended to every call's URL, in order.
    pub query: Vec<(String, String)>,
    /// `kind = "anthropic"`: the `anthropic-version` header.
    pub anthropic_version: HeaderValue,
    /// `kind = "anthropic"`: `max_tokens` for requests that set none.
    pub max_tokens_default: u32,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub first_byte_timeout: Duration,
    pub warmth: WarmthSource,
    /// How often the warmth prober polls (`refresh_ms`).
    pub refresh: Duration,
    /// How long one warmth probe may take (`probe_timeout_ms`).
    pub probe_timeout: Duration,
    /// Extra tries within a step after a connection error, 429 or 5xx.
    pub retries: u32,
    pub retry_backoff: Duration,
    pub retry_backoff_max: Duration,
    /// Consecutive failures that open the circuit; 0: never.
    pub circuit_failures: u32,
    pub circuit_cooldown: Duration,
    /// `max_concurrent`; 0: no limit.
    pub max_concurrent: usize,
    pub queue_limit: usize,
    pub queue_wait: Duration,
}

#[derive(Debug, Clone)]
pub struct ModelConfig {
    pub alias: String,
    pub upstream: String,
    /// The model name sent upstream.
    pub name: String,
    pub price: Option<Price>,
    pub serves: Serves,
}

/// What a model can answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Serves {
    /// Chat completions, and responses (translated to chat completions).
    pub chat: bool,
    pub embeddings: bool,
}

impl Default for Serves {
    fn default() -> Self {
        Serves { chat: true, embeddings: false }
    }
}

/// A model's price, USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    pub input_usd_per_mtok: f64,
    pub output_usd_per_mtok: f64,
}

impl Price {
    /// USD for `prompt` and `completion` tokens.
    pub fn cost(&self, prompt: u64, completion: u64) -> f64 {
        (prompt as f64 * self.input_usd_per_mtok + completion as f64 * self.output_usd_per_mtok) / 1e6
    }

    /// Whether calls cost anything (a zero price is a free model).
    pub fn is_paid(&self) -> bool {
        self.input_usd_per_mtok > 0.0 || self.output_usd_per_mtok > 0.0
    }
}

#[derive(Debug, Clone)]
pub struct TaskConfig {
    pub name: String,
    /// Model aliases, all known to `Config::models`.
    pub chain: Vec<String>,
    pub min_tier: Tier,
    pub content_class: ContentClass,
    /// The tier-`none` answer, if the task has one.
    pub rules_reply: Option<String>,
    pub verify: VerifyConfig,
    pub prefer_warm: bool,
    pub deadline: Option<Duration>,
    /// `[detect]`'s `opaque` and `local_output`, or the task's own.
    pub detect: DetectPolicy,
    /// The task's response cache, when it has one.
    pub cache: Option<CacheConfig>,
}

/// A caller's settings.
#[derive(Debug, Clone)]
pub struct Profile {
    pub name: String,
    /// Sorted, without duplicates.
    pub allowed_tiers: Vec<Tier>,
    pub cloud_consent: bool,
    pub task_overrides: BTreeMap<String, Tier>,
    pub fallback_to_rules_on_error: bool,
    pub locale: Locale,
    /// What all the profile's callers may spend together.
    pub budget: BudgetConfig,
}

/// Spend budgets in USD per UTC day and calendar month; `None` is no budget.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BudgetConfig {
    pub daily_usd: Option<f64>,
    pub monthly_usd: Option<f64>,
}

impl BudgetConfig {
    pub fn is_unlimited(&self) -> bool {
        self.daily_usd.is_none() && self.monthly_usd.is_none()
    }
}

impl Profile {
    /// The profile used when `[profiles.default]` is not written: every tier, no cloud
    /// consent.
    pub fn implied_default() -> Self {
        Profile {
            name: "default".into(),
            allowed_tiers: vec![Tier::Local, Tier::Server, Tier::Cloud],
            cloud_consent: false,
            task_overrides: BTreeMap::new(),
            fallback_to_rules_on_error: false,
            locale: Locale::En,
            budget: BudgetConfig::default(),
        }
    }

    /// The highest tier this profile allows on its own (without overrides).
    pub fn max_tier(&self) -> Tier {
        self.allowed_tiers.iter().copied().max().unwrap_or(Tier::None)
    }
}

#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub required: bool,
    pub allow_unauthenticated_network: bool,
    pub keys: Vec<ClientKey>,
}

/// A client key, kept only as its SHA-256 digest.
#[derive(Clone)]
pub struct ClientKey {
    pub digest: [u8; 32],
    /// Its name in metrics and messages (`name`, else its `key_env`).
    pub name: String,
    pub budget: BudgetConfig,
    pub profile: String,
    pub admin: bool,
    pub limits: KeyLimits,
}

/// A client key's rate limits (`[[keys]]`); `None` is no limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeyLimits {
    pub requests_per_minute: Option<u64>,
    pub tokens_per_minute: Option<u64>,
}

impl KeyLimits {
    pub fn is_unlimited(&self) -> bool {
        self.requests_per_minute.is_none() && self.tokens_per_minute.is_none()
    }
}

impl fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientKey")
            .field("name", &self.name)
            .field("profile", &self.profile)
            .field("admin", &self.admin)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
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

    /// The configured price of a model alias, if it has one.
    pub fn price_of(&self, alias: &str) -> Option<Price> {
        self.models.get(alias).and_then(|m| m.price)
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
            let warmth = match u.warmth {
                WarmthSource::None => String::new(),
                source if source.is_probed() => {
                    format!(", warmth {source} every {} ms", u.refresh.as_millis())
                }
                source => format!(", warmth {source}"),
            };
            out.push_str(&format!("  {} [{}] {}{}{}\n", u.name, u.tier, u.base_url, key, warmth));
        }
        out.push_str(&format!("models ({}):\n", self.models.len()));
        for m in self.models.values() {
            out.push_str(&format!("  {} -> {} on {}\n", m.alias, m.name, m.upstream));
        }
        out.push_str(&format!("tasks ({}):\n", self.tasks.len()));
        for t in self.tasks.values() {
            let rules = if t.rules_reply.is_some() { " -> rules" } else { "" };
            out.push_str(&format!(
                "  {}: {}{rules} (min_tier {}, content {})\n",
                t.name,
                t.chain.join(" -> "),
                t.min_tier,
                t.content_class
            ));
        }
        out.push_str(&format!("profiles ({}):\n", self.profiles.len()));
        for p in self.profiles.values() {
            let tiers: Vec<&str> = p.allowed_tiers.iter().map(|t| t.as_str()).collect();
            out.push_str(&format!("  {}: tiers [{}], cloud consent {}\n", p.name, tiers.join(", "), p.cloud_consent));
        }
        out.push_str(&format!(
            "auth: {}, {} key(s)\n",
            if self.auth.required { "required" } else { "optional" },
            self.auth.keys.len()
        ));
        out
    }
}
