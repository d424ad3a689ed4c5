//! The raw serde mirror of the TOML file. Every field is what an operator can write;
//! nothing here is trusted until `validate` turns it into a [`super::Config`].
//!
//! Enum-like fields (`tier`, `kind`) stay strings here so that validation can report
//! every bad value at once instead of serde stopping at the first.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use super::raw_services::{RawState, RawTracing};

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
    #[serde(default)]
    pub trail: RawTrail,
    #[serde(default)]
    pub audit: RawAudit,
    #[serde(default)]
    pub state: RawState,
    #[serde(default)]
    pub tracing: RawTracing,
}

/// `[audit]`: one JSON line per request.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawAudit {
    /// The JSONL file. Absent: no audit log.
    pub path: Option<String>,
    /// Include request messages and answers. Default false.
    pub include_content: Option<bool>,
    /// Rotate past this size, in bytes. Default 104857600 (100 MiB).
    pub max_bytes: Option<u64>,
    /// Rotated files kept. Default 5.
    pub keep: Option<usize>,
    /// Records that may wait for the writer before new ones are lost (and counted).
    /// Default 8192.
    pub queue: Option<usize>,
}

/// `[trail]`: how the record of attempts reaches the client.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawTrail {
    /// Add a `tierwise` object with the full trail to non-streaming bodies. Default true.
    pub in_body: Option<bool>,
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
    /// While a verified stream is buffered: after this long without an answer the
    /// response starts with SSE comment keep-alives, repeated at this interval, in ms.
    /// Default 3000.
    pub sse_keepalive_ms: Option<u64>,
    /// Chat completions that may run at once; 0: no limit. Default 1024.
    pub max_concurrent_requests: Option<usize>,
    /// Requests that may wait for a place when all are taken. Default 1024.
    pub queue_limit: Option<usize>,
    /// How long a queued request waits for a place before 503, in ms. Default 2000.
    pub queue_wait_ms: Option<u64>,
    /// Time a client has to send a request's headers, in ms; also how long an idle
    /// keep-alive connection stays open. Default 30000.
    pub header_read_timeout_ms: Option<u64>,
    /// Largest request head (request line and headers), in bytes; larger gets 431.
    /// Default 65536.
    pub max_header_bytes: Option<usize>,
    /// Time a client has to send a request's body, in ms; slower gets 408. Default 30000.
    pub body_read_timeout_ms: Option<u64>,
    /// How often the config file is checked for changes, which reload it like SIGHUP, in
    /// ms; 0: never (SIGHUP and `POST /v1/tierwise/reload` only). Default 2000.
    pub config_poll_ms: Option<u64>,
    /// Serve `/metrics` on this address only (e.g. `127.0.0.1:9464`), not on `listen`.
    /// Default: on `listen`.
    pub metrics_listen: Option<String>,
}

/// `[upstreams.NAME]`: one server tierwise can call, OpenAI-compatible or Anthropic.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    /// `local` | `server` | `cloud`. Required.
    pub tier: Option<String>,
    /// Wire protocol: `openai` (default; `POST {base_url}/chat/completions`) or
    /// `anthropic` (Anthropic's Messages API, `POST {base_url}/messages`).
    pub kind: Option<String>,
    /// How a `POST /v1/responses` request reaches this upstream: `translate` (default: as
    /// the chat completion it amounts to) or `native` (`POST {base_url}/responses`, the
    /// client's Responses body passed through, when the step's answer is not verified).
    pub responses: Option<String>,
    /// Base URL including the version path, e.g. `http://127.0.0.1:8080/v1`. Required,
    /// except for `kind = "anthropic"`, where it defaults to `https://api.anthropic.com/v1`.
    pub base_url: Option<String>,
    /// Name of the environment variable holding this upstream's API key.
    pub api_key_env: Option<String>,
    /// The header the key is sent in: `authorization` (`Bearer <key>`; the default for
    /// `openai`) or any other header name, which gets the bare key (`api-key` for Azure
    /// OpenAI, `x-api-key`, the default for `anthropic`). Needs `api_key_env`.
    pub auth_header: Option<String>,
    /// Extra headers sent on every request to this upstream.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Query parameters appended to every call's URL, e.g. Azure's
    /// `{ "api-version" = "2024-10-21" }`.
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    /// `kind = "anthropic"` only: the `anthropic-version` header. Default `2023-06-01`.
    pub anthropic_version: Option<String>,
    /// `kind = "anthropic"` only: `max_tokens` sent when the request sets neither
    /// `max_completion_tokens` nor `max_tokens` (the Messages API requires one).
    /// Default 4096.
    pub max_tokens_default: Option<u32>,
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
    /// Extra tries within a step on connection errors, 429 and 5xx, with exponential
    /// backoff and full jitter, honouring `Retry-After`, never past the request's
    /// deadline. Default 2 for `server` and `cloud`, 0 for `local`.
    pub retries: Option<u32>,
    /// First backoff, in ms (doubles per retry). Default 250.
    pub retry_backoff_ms: Option<u64>,
    /// Longest backoff (and longest `Retry-After` honoured), in ms. Default 8000.
    pub retry_backoff_max_ms: Option<u64>,
    /// Consecutive failures (connection, timeout, 5xx, malformed) that open the circuit:
    /// steps on this upstream are skipped for `circuit_cooldown_ms`, then one request
    /// probes it. Default 5; 0 disables.
    pub circuit_failures: Option<u32>,
    /// How long an open circuit stays open, in ms. Default 30000.
    pub circuit_cooldown_ms: Option<u64>,
    /// Calls to this upstream that may run at once (a stream counts until it ends); 0:
    /// no limit (the default). Set it to what the server can serve in parallel, e.g.
    /// llama-server's `--parallel`.
    pub max_concurrent: Option<usize>,
    /// Calls that may wait for a place when all are taken. Default 64.
    pub queue_limit: Option<usize>,
    /// How long a call waits for a place (never past the request's deadline) before its
    /// step is skipped as busy, in ms. Default 2000.
    pub queue_wait_ms: Option<u64>,
}

/// `[models.ALIAS]`: a name clients and chains use for one model on one upstream.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    /// Which `[upstreams.NAME]` serves it. Required.
    pub upstream: Option<String>,
    /// The model name sent upstream. Default: the alias itself.
    pub name: Option<String>,
    /// Prices for `tierwise_cost_usd_total` and the saving metric.
    pub price: Option<RawPrice>,
    /// What it serves: `chat` (chat completions and responses), `embeddings`, or both.
    /// Default `["chat"]`.
    pub serves: Option<Vec<String>>,
}

#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawPrice {
    /// USD per million prompt tokens.
    pub input_usd_per_mtok: f64,
    /// USD per million completion tokens.
    pub output_usd_per_mtok: f64,
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
    /// How answers are checked before they are accepted. Absent: no verification.
    pub verify: Option<RawVerify>,
    /// Among consecutive chain steps of one tier, try loaded (warm) models first.
    /// Default false.
    pub prefer_warm: Option<bool>,
    /// The request's deadline, in ms, when it sends no `x-tierwise-deadline-ms`: a cold
    /// model whose learned load time does not fit is skipped (`not_ready`) when a later
    /// step may run. Default: none.
    pub deadline_ms: Option<u64>,
    /// This task's handling of opaque payloads and of personal data in local output.
    pub detect: Option<RawTaskDetect>,
    /// Answers kept and served again to the same request (docs/caching.md). Absent: none.
    pub cache: Option<RawCache>,
}

/// `[tasks.NAME] cache = { ... }`: the task's response cache.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawCache {
    /// How long an answer is kept, in seconds. Default 3600.
    pub ttl_s: Option<u64>,
    /// The in-memory store's size bound, in bytes. Default 67108864 (64 MiB).
    pub max_bytes: Option<u64>,
    /// Cache only requests at `temperature` 0 or with a `seed`. Default true.
    pub deterministic_only: Option<bool>,
    /// Namespace entries by client key as well as by profile. Default false.
    pub per_key: Option<bool>,
}

/// `[tasks.NAME.verify]`: deterministic checks, then an optional LLM judge.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawVerify {
    /// In order: `non_empty`, `finish_stop`, `json`, `json_schema`, `max_chars`, `regex`,
    /// `no_refusal`, `tool_call_valid`.
    #[serde(default)]
    pub checks: Vec<String>,
    /// For the `max_chars` check.
    pub max_chars: Option<usize>,
    /// For the `regex` check: the answer must match.
    pub regex: Option<String>,
    /// For the `no_refusal` check. Default: common English refusal phrases.
    pub refusal_phrases: Option<Vec<String>>,
    /// A model alias asked for a JSON verdict after the checks pass.
    pub judge: Option<String>,
    /// The judge's prompt; `{system}`, `{user}`, `{answer}` are replaced.
    pub judge_prompt: Option<String>,
    /// How long the judge may take, in ms. Default 30000.
    pub judge_timeout_ms: Option<u64>,
    /// Which tiers' answers are verified. Default `["local", "server"]`.
    pub tiers: Option<Vec<String>>,
    /// `append` (default): the next step gets the feedback; `off`.
    pub feedback: Option<String>,
    /// Accept when the judge's score (0–1) reaches this. Default: the judge's boolean
    /// (0.5 with `judge_score = "yes_no"`).
    pub judge_threshold: Option<f64>,
    /// `json` (default: the judge's JSON verdict, its `score` if it has one) or `yes_no`
    /// (a one-token Yes/No; the score is the probability of Yes).
    pub judge_score: Option<String>,
    /// Score the answer from its token log-probabilities.
    pub confidence: Option<RawConfidence>,
    /// Sample the model again; accept when the answers agree.
    pub consistency: Option<RawConsistency>,
    /// Ask the answering model whether its answer is right.
    pub self_check: Option<RawSelfCheck>,
}

/// `[tasks.NAME.verify.confidence]`.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfidence {
    /// Accept at or above this score (0–1). Default 0.5.
    pub threshold: Option<f64>,
    /// `mean` (default), `min`, or `lowest_k`.
    pub score: Option<String>,
    /// For `lowest_k`: how many tokens. Default 5.
    pub k: Option<usize>,
}

/// `[tasks.NAME.verify.consistency]`.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawConsistency {
    /// Answers compared, the verified one included. Default 5.
    pub samples: Option<usize>,
    /// Temperature of the extra samples. Default 0.7.
    pub temperature: Option<f64>,
    /// `number`, `choice`, `text` (default) or `json`.
    pub extract: Option<String>,
    /// For `extract = "choice"`.
    pub choices: Option<Vec<String>>,
    /// For `extract = "json"`: a JSON pointer (`/answer`).
    pub pointer: Option<String>,
    /// The largest group's share needed to accept. Default 0.6.
    pub threshold: Option<f64>,
    /// `auto` (default), `n` or `calls`.
    pub sampling: Option<String>,
    /// How long the samples may take, in ms. Default 60000.
    pub timeout_ms: Option<u64>,
}

/// `[tasks.NAME.verify.self_check]`.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawSelfCheck {
    /// The verification prompt; `{system}`, `{user}`, `{answer}` are replaced.
    pub prompt: Option<String>,
    /// 1 (default): the token probability of "Yes"; more: the share of "Yes" in samples.
    pub samples: Option<usize>,
    /// Temperature of sampled verdicts. Default 0.7.
    pub temperature: Option<f64>,
    /// Accept at or above this score (0–1). Default 0.5.
    pub threshold: Option<f64>,
    /// How long the check may take, in ms. Default 30000.
    pub timeout_ms: Option<u64>,
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
    /// Spend budget of all the profile's callers together, USD per UTC day. Default none.
    pub budget_usd_daily: Option<f64>,
    /// The same per UTC calendar month.
    pub budget_usd_monthly: Option<f64>,
}

/// `[auth]`: who may call tierwise.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    /// true: a request without a known key gets 401. false (default): requests without
    /// a key get profile `default`. A presented key that matches no `[[keys]]` entry is
    /// a 401 either way (ignored only while no `[[keys]]` exist); two different valid
    /// keys in one request are a 400.
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
    /// Requests this key may start per minute (a bucket of this size, refilled
    /// continuously). Absent: no limit.
    pub requests_per_minute: Option<u64>,
    /// Tokens (prompt + completion, as the upstreams report them) this key may use per
    /// minute. Absent: no limit.
    pub tokens_per_minute: Option<u64>,
    /// The key's name in metrics and messages. Default: its key_env, or `key-` and the
    /// first 8 hex digits of its digest.
    pub name: Option<String>,
    /// Spend budget of this key, USD per UTC day. Default none.
    pub budget_usd_daily: Option<f64>,
    /// The same per UTC calendar month.
    pub budget_usd_monthly: Option<f64>,
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
    /// Where national phone numbers (`030 1234567`, no country code) are looked up, as
    /// ISO 3166 codes; `US` also covers North American formats (`415 555 0132`).
    /// International numbers (`+49 …`, `0049 …`) are found whatever this says. Default
    /// `["US", "GB", "DE", "FR", "NL", "AT", "CH", "IT", "BE", "SE", "IE"]`.
    pub phone_regions: Option<Vec<String>>,
    /// What a payload the detector cannot read (a `data:` URI of an image, audio or a
    /// PDF, long base64) makes a request: `sensitive` (default: it stays on this machine)
    /// or `normal`. A task may say otherwise (`[tasks.NAME.detect]`).
    pub opaque: Option<String>,
    /// What happens when a local model's answer, a check's or a judge's feedback, or an
    /// upstream's error text holds personal data before it would go to a higher tier:
    /// `reclassify` (default: the request becomes sensitive from that step on) or
    /// `redact` (placeholders such as `[email]`; a judge above local is not asked).
    pub local_output: Option<String>,
}

/// `[tasks.NAME.detect]`: the task's own `opaque` and `local_output` (see `[detect]`).
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawTaskDetect {
    /// `sensitive` | `normal`. Default: `[detect] opaque`.
    pub opaque: Option<String>,
    /// `reclassify` | `redact`. Default: `[detect] local_output`.
    pub local_output: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawPattern {
    /// Shown in the classification reason (e.g. `employee_id`).
    pub name: String,
    /// A regular expression (Rust `regex` syntax).
    pub regex: String,
}
