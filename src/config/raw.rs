//! The raw serde mirror of the TOML file. Every field is what an operator can write;
//! nothing here is trusted until `validate` turns it into a [`super::Config`].
//!
//! Enum-like fields (`tier`, `kind`) stay strings here so that validation can report
//! every bad value at once instead of serde stopping at the first.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub upstreams: BTreeMap<String, RawUpstream>,
    #[serde(default)]
    pub models: BTreeMap<String, RawModel>,
    #[serde(default)]
    pub tasks: BTreeMap<String, RawTask>,
    #[serde(default)]
    pub profiles: BTreeMap<String, RawProfile>,
    #[serde(default)]
    pub auth: RawAuth,
    #[serde(default)]
    pub keys: Vec<RawKey>,
    #[serde(default)]
    pub detect: RawDetect,
}

/// `[server]`: where tierwise listens and how it treats incoming requests.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    /// Address to listen on. Default `127.0.0.1:4141`.
    pub listen: Option<String>,
    /// Largest accepted request body, in bytes. Default 16 MiB; larger bodies get 413.
    pub body_limit_bytes: Option<u64>,
    /// Whole-request deadline, in ms, until the response starts. Default 600000 (10 min).
    pub request_timeout_ms: Option<u64>,
    /// How long in-flight requests (streams included) may run after SIGINT/SIGTERM, in ms.
    /// Default 30000.
    pub shutdown_grace_ms: Option<u64>,
}

/// `[upstreams.NAME]`: one OpenAI-compatible server tierwise can call.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    /// `local` | `server` | `cloud`. Required.
    pub tier: Option<String>,
    /// Wire protocol. `openai` (default).
    pub kind: Option<String>,
    /// Base URL including the version path, e.g. `http://127.0.0.1:8080/v1`. Required.
    pub base_url: Option<String>,
    /// Name of the environment variable holding this upstream's API key.
    pub api_key_env: Option<String>,
    /// Extra headers sent on every request to this upstream.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Total time for one call, body and stream included, in ms. Default 600000.
    pub timeout_ms: Option<u64>,
    /// TCP (and TLS) connect timeout, in ms. Default 2000.
    pub connect_timeout_ms: Option<u64>,
    /// Time until the response headers and the first body bytes arrive, in ms.
    /// Default 120000 (a cold local model may take a while to load).
    pub first_byte_timeout_ms: Option<u64>,
    /// How tierwise learns which models are loaded (warm): `llama-swap` (polls `/running`),
    /// `llama-server` (router mode's `/v1/models` status, or `/health`), `ollama`
    /// (`/api/ps`), `always` (a cloud API: always warm) or `none` (default: unknown).
    pub warmth: Option<String>,
    /// How often the warmth prober polls, in ms. Default 2000. A snapshot older than
    /// three periods counts as unknown.
    pub refresh_ms: Option<u64>,
    /// How long one warmth probe may take, in ms, before the upstream counts as down.
    /// Default 200 (or `refresh_ms`, if shorter); at most `refresh_ms`.
    pub probe_timeout_ms: Option<u64>,
}

/// `[models.ALIAS]`: a name clients and chains use for one model on one upstream.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    /// Which `[upstreams.NAME]` serves it. Required.
    pub upstream: Option<String>,
    /// The model name sent upstream. Default: the alias itself.
    pub name: Option<String>,
}

/// `[tasks.NAME]`: a policy clients select with `model` or `x-tierwise-task`.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawTask {
    /// Model aliases in escalation order, cheapest first. Required, non-empty.
    #[serde(default)]
    pub chain: Vec<String>,
    /// Lowest tier allowed to answer: `none` | `local` | `server` | `cloud`. Default `none`.
    pub min_tier: Option<String>,
    /// `normal` | `sensitive`. Sensitive content runs on `local` (or `none`) only.
    /// Default `normal`; a request can raise it, never lower it.
    pub content_class: Option<String>,
    /// A deterministic answer (tier `none`) for when no model may or can run.
    pub rules: Option<RawRules>,
}

#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawRules {
    /// The reply text.
    pub reply: String,
}

/// `[profiles.NAME]`: a caller's settings. Client keys map to profiles; requests without
/// a key get `default`.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawProfile {
    /// Tiers this caller may use. Default: local, server, cloud.
    pub allowed_tiers: Option<Vec<String>>,
    /// Consent to send content to `cloud` upstreams. Default false.
    pub cloud_consent: Option<bool>,
    /// Task name → the one tier that task runs on for this caller.
    #[serde(default)]
    pub task_overrides: BTreeMap<String, String>,
    /// On an upstream error, answer with the task's rules reply instead of trying the
    /// next step. Default false.
    pub fallback_to_rules_on_error: Option<bool>,
    /// Language of error messages when the request has no `Accept-Language`: `en`, `de`.
    pub locale: Option<String>,
}

/// `[auth]`: who may call tierwise.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    /// true: a request without a known key gets 401. false (default): requests without
    /// a key (or with an unknown one) get profile `default`.
    pub required: Option<bool>,
    /// tierwise refuses to listen on a non-loopback address without auth unless this is
    /// true. Default false.
    pub allow_unauthenticated_network: Option<bool>,
}

/// `[[keys]]`: one client key and the profile it maps to.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawKey {
    /// The env var holding the key. One of `key_env` / `key_sha256`.
    pub key_env: Option<String>,
    /// Hex SHA-256 of the key (`printf %s "$KEY" | sha256sum`).
    pub key_sha256: Option<String>,
    /// The profile this key gets. Required.
    pub profile: Option<String>,
    /// May use admin endpoints (explain with any profile). Default false.
    pub admin: Option<bool>,
}

/// `[detect]`: the built-in sensitive-content detector.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawDetect {
    /// `enforce` (default): a finding makes the request sensitive. `off`: no scanning.
    pub mode: Option<String>,
    /// Built-in detectors to run. Default all: `email`, `phone`, `iban`, `card`.
    pub builtin: Option<Vec<String>>,
    /// Extra patterns; a match makes the request sensitive.
    #[serde(default)]
    pub patterns: Vec<RawPattern>,
}

#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawPattern {
    /// Shown in the classification reason (e.g. `employee_id`).
    pub name: String,
    /// A regular expression (Rust `regex` syntax).
    pub regex: String,
}
