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
}
